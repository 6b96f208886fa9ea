"""Tracking without ROS: association, stable ids, confirmation, hold, what is reported."""

from __future__ import annotations

import pytest

from ood_perception.core.ground import GroundObstacle
from ood_perception.core.postprocess import Obstacle
from ood_perception.core.tracking import (
    Tracker,
    TrackingConfig,
    box_iou,
    ground_gap,
    reported,
)
from ood_perception.errors import ConfigurationError


def _obstacle(x: int, y: int = 50, size: int = 20) -> Obstacle:
    return Obstacle(id=1, area=size * size, score_max=1.0, score_mean=1.0,
                    bbox=(x, y, size, size), centroid=(x + size / 2, y + size / 2))


def _ground(distance: float, lateral: float = 0.0) -> GroundObstacle:
    return GroundObstacle(distance, lateral, 1.0, ((distance, lateral),))


def test_box_iou_and_ground_gap():
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (10, 0, 10, 10)) == 0.0
    assert ground_gap(_ground(10.0), _ground(13.0, 4.0)) == pytest.approx(5.0)
    assert ground_gap(None, _ground(1.0)) == float("inf")


def test_a_moving_obstacle_keeps_its_id_and_is_confirmed_after_confirm_frames():
    tracker = Tracker(TrackingConfig(confirm_frames=3, window=5, hold_frames=2))
    states = [tracker.update([_obstacle(100 + 4 * i)]) for i in range(5)]
    assert {s[0].id for s in states} == {1}
    assert [s[0].confirmed for s in states] == [False, False, True, True, True]


def test_confirmation_counts_hits_within_the_window_not_in_a_row():
    tracker = Tracker(TrackingConfig(confirm_frames=3, window=5, hold_frames=0))
    seen = [True, False, True, False, True]
    for hit in seen:
        tracks = tracker.update([_obstacle(100)] if hit else [])
    assert len(tracks) == 1 and tracks[0].id == 1 and tracks[0].confirmed


def test_an_unconfirmed_track_ends_once_the_window_cannot_confirm_it():
    tracker = Tracker(TrackingConfig(confirm_frames=3, window=4, hold_frames=5))
    tracker.update([_obstacle(100)])
    assert len(tracker.update([])) == 1  # 1 hit, 1 miss: 2 more frames could still confirm
    assert tracker.update([]) == []  # window of 4 can no longer hold 3 hits
    assert tracker.update([_obstacle(100)])[0].id == 2  # a new track, a new id


def test_a_confirmed_track_is_held_for_hold_frames_then_ends():
    config = TrackingConfig(confirm_frames=1, window=1, hold_frames=2)
    tracker = Tracker(config)
    tracker.update([_obstacle(100)])
    held = [tracker.update([]) for _ in range(3)]
    assert [[(t.id, t.misses) for t in h] for h in held] == [[(1, 1)], [(1, 2)], []]
    assert reported(held[0], config)[0].obstacle.bbox == (100, 50, 20, 20)


def test_ground_distance_associates_when_the_boxes_do_not_overlap():
    config = TrackingConfig(confirm_frames=1, window=1, max_distance=1.5)
    tracker = Tracker(config)
    first = tracker.update([_obstacle(100)], [_ground(10.0)])
    jumped = tracker.update([_obstacle(200)], [_ground(10.5, 0.5)])  # the image box jumped
    assert first[0].id == jumped[0].id == 1
    far = tracker.update([_obstacle(400)], [_ground(30.0)])
    assert {t.id for t in far} == {1, 2}  # 1 held, 2 new


def test_the_best_pair_wins_and_each_track_takes_one_obstacle():
    tracker = Tracker(TrackingConfig(confirm_frames=1, window=1))
    tracker.update([_obstacle(100), _obstacle(300)])
    # Two detections overlap track 1; the closer one continues it, the other starts track 3.
    tracks = tracker.update([_obstacle(110), _obstacle(102), _obstacle(300)])
    assert [t.id for t in tracks if t.misses == 0] == [3, 1, 2]


def test_reported_keeps_unconfirmed_detections_unless_confirmed_only():
    tracker = Tracker(TrackingConfig(confirm_frames=2, window=2))
    tracks = tracker.update([_obstacle(100)])
    assert [t.id for t in reported(tracks, TrackingConfig(confirm_frames=2, window=2))] == [1]
    only = TrackingConfig(confirm_frames=2, window=2, confirmed_only=True)
    assert reported(tracks, only) == []
    assert [t.id for t in reported(tracker.update([_obstacle(100)]), only)] == [1]


def test_ground_positions_must_match_the_obstacles():
    with pytest.raises(ConfigurationError, match="positions"):
        Tracker().update([_obstacle(1)], [])


@pytest.mark.parametrize("kwargs, message", [
    ({"confirm_frames": 6, "window": 5}, "track_confirm_frames"),
    ({"confirm_frames": 0}, "track_confirm_frames"), ({"hold_frames": -1}, "track_hold"),
    ({"min_iou": 1.5}, "track_min_iou"), ({"max_distance": -1.0}, "track_max_distance"),
])
def test_bad_tracking_configs_name_the_parameter(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        TrackingConfig(**kwargs)


def test_a_held_track_moves_on_at_its_velocity_and_is_found_there_again():
    tracker = Tracker(TrackingConfig(confirm_frames=1, window=1, hold_frames=3, min_iou=0.5,
                                     max_distance=0.0))
    for i in range(4):  # 6 px right and 0.5 m nearer per frame
        tracker.update([_obstacle(100 + 6 * i)], [_ground(20.0 - 0.5 * i)])
    (held,) = tracker.update([])
    assert held.misses == 1 and held.obstacle.bbox == (124, 50, 20, 20)
    assert held.ground.distance == pytest.approx(18.0)
    assert held.ground.contacts == ((pytest.approx(18.0), 0.0),)
    (held,) = tracker.update([])
    assert held.obstacle.bbox == (130, 50, 20, 20)
    # Seen again where the motion put it: the same track (IoU with the last box alone: 0.2).
    (found,) = tracker.update([_obstacle(136)], [_ground(17.0)])
    assert found.id == held.id and found.misses == 0


def test_a_held_track_ends_when_it_leaves_the_frame_or_its_box_collapses():
    config = TrackingConfig(confirm_frames=1, window=1, hold_frames=10)
    leaving = Tracker(config)
    for x in (30, 20, 10):  # 10 px left per frame, 20 px wide
        leaving.update([_obstacle(x)], size=(100, 200))
    held = [leaving.update([], size=(100, 200)) for _ in range(3)]
    assert [[t.obstacle.bbox[0] for t in h] for h in held] == [[0], [-10], []]  # half, out
    shrinking = Tracker(config)
    for size in (20, 14, 8):
        shrinking.update([_obstacle(100, size=size)])
    assert shrinking.update([]) == []  # a box going to nothing is no obstacle held
