"""Ground metrics against known truth: matching, distance error by range, flicker, false
obstacles, and a drive through a real pipeline."""

from __future__ import annotations

import pytest

from ood_perception.core.ground import GroundObstacle
from ood_perception.evaluation.ground_metrics import (
    RANGE_BINS,
    GroundMetrics,
    ReportedObstacle,
    match,
    overlap,
)
from ood_perception.synthetic.scenes import SceneObstacle


def _truth(index: int, distance: float, bbox=(100, 100, 20, 20), pixels: int = 300):
    return SceneObstacle(index=index, family="star/dots", distance=distance, lateral=0.0,
                         width=1.0, bbox=bbox, pixels=pixels)


def _found(bbox, distance: float | None):
    ground = None if distance is None else GroundObstacle(distance, 0.2, 1.0, ())
    return ReportedObstacle(bbox, ground)


def test_overlap_is_over_the_smaller_box_and_matching_is_one_to_one():
    assert overlap((0, 0, 10, 10), (0, 0, 5, 5)) == 1.0
    assert overlap((0, 0, 10, 10), (10, 10, 5, 5)) == 0.0
    truth = [_truth(0, 10.0, (0, 0, 10, 10)), _truth(1, 12.0, (50, 0, 10, 10))]
    found = [_found((1, 1, 8, 8), 10.0), _found((0, 0, 9, 9), 10.0), _found((51, 0, 9, 9), 12)]
    assert match(truth, found) == {1: 0, 2: 1}  # the better of two takes the true one


def test_errors_by_range_flicker_and_false_obstacles():
    metrics = GroundMetrics(min_pixels=20)
    box = (100, 100, 20, 20)
    metrics.update([_truth(0, 12.0, box)], [_found(box, 13.0)])
    metrics.update([_truth(0, 11.0, box)], [])  # disappears: flicker 1
    metrics.update([_truth(0, 10.0, box)], [_found(box, 9.5), _found((300, 10, 5, 5), 30.0)])
    metrics.update([_truth(0, 4.0, box), _truth(1, 45.0, (0, 0, 4, 4), pixels=10)], [])
    summary = metrics.summary()
    assert summary["frames"] == 4 and summary["true_obstacle_frames"] == 3
    assert summary["flicker_events"] == 2  # lost at 11 m, found again at 10 m
    assert summary["false_obstacles"] == 1 and summary["false_obstacles_per_frame"] == 0.25
    bins = {tuple(b["range_m"]): b for b in summary["by_range"]}
    assert set(bins) == set(RANGE_BINS)
    assert bins[(10.0, 20.0)]["true_obstacle_frames"] == 3 and bins[(10.0, 20.0)]["found"] == 2
    assert bins[(10.0, 20.0)]["distance_error_median_m"] == pytest.approx(0.75)
    assert bins[(10.0, 20.0)]["distance_bias_m"] == pytest.approx(0.25)
    assert bins[(40.0, 50.0)]["true_obstacle_frames"] == 0  # too few pixels to count
    assert summary["lateral_error_median_m"] == pytest.approx(0.2)
