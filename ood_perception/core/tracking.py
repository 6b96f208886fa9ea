"""Obstacles across frames: stable ids, confirmation and hold, so a planner does not see an
obstacle flicker.

Each camera has its own `Tracker`. A frame's obstacles are associated with the live tracks
greedily, best pair first, where a pair is close enough in the image (box IoU at least
`min_iou`) or on the ground (contacts at most `max_distance` metres apart). A track is
confirmed once it was seen in `confirm_frames` of the last `window` frames and stays
confirmed; a confirmed track that is not seen is held for up to `hold_frames` frames, its box
and ground position carried on at their last velocity (per frame, smoothed), as SORT's
constant-velocity model does (Bewley et al., "Simple Online and Realtime Tracking", 2016).
Association compares each track's box and place predicted for the new frame. The defaults
suit 30 Hz: confirmed after 0.1 s, held for 0.2 s.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ood_perception.core.ground import CameraModel, CameraPose, GroundObstacle, locate
from ood_perception.core.pipeline import FrameResult
from ood_perception.core.postprocess import Obstacle
from ood_perception.errors import ConfigurationError


@dataclass(frozen=True)
class TrackingConfig:
    """How obstacles become tracks; validated on construction."""

    confirm_frames: int = 3
    window: int = 5
    hold_frames: int = 6
    # A detection continues a track when their boxes overlap this much (IoU) ...
    min_iou: float = 0.1
    # ... or their ground contacts lie this close (metres), when both are on the ground.
    max_distance: float = 1.5
    # Publish (and draw into the mask and grid) confirmed tracks only.
    confirmed_only: bool = False

    def __post_init__(self) -> None:
        for name in ("confirm_frames", "window", "hold_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"track_{name} must be an integer >= 0, got {value!r}")
        if not 1 <= self.confirm_frames <= self.window:
            raise ConfigurationError(f"track_confirm_frames must be within 1..track_window "
                                     f"({self.window}), got {self.confirm_frames}")
        if not 0.0 <= self.min_iou <= 1.0:
            raise ConfigurationError(f"track_min_iou must be within 0..1, got {self.min_iou}")
        if not (math.isfinite(self.max_distance) and self.max_distance >= 0):
            raise ConfigurationError(f"track_max_distance must be >= 0 metres, got "
                                     f"{self.max_distance}")


@dataclass(frozen=True)
class Track:
    """A tracked obstacle as of the last frame."""

    id: int  # stable for the track's life, 1, 2, ... per tracker
    obstacle: Obstacle  # the detection it was last seen as (held: its box predicted now)
    ground: GroundObstacle | None  # where it stands, if known (held: predicted now)
    confirmed: bool
    misses: int  # frames since it was last seen (0: seen in this frame)


@dataclass
class _State:
    id: int
    obstacle: Obstacle
    ground: GroundObstacle | None
    seen: deque = field(default_factory=deque)  # bool per frame, newest last
    confirmed: bool = False
    misses: int = 0
    # Per-frame change of the box (x, y, width, height) and of (distance, lateral).
    box_velocity: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    ground_velocity: tuple[float, float] = (0.0, 0.0)
    observations: int = 1

    def predicted(self, frames: int) -> tuple[Obstacle, GroundObstacle | None]:
        """The box and ground place `frames` frames after it was last seen."""
        if frames == 0:
            return self.obstacle, self.ground
        x, y, w, h = (v + frames * d for v, d in zip(self.obstacle.bbox, self.box_velocity,
                                                      strict=True))
        box = (round(x), round(y), max(round(w), 1), max(round(h), 1))
        obstacle = replace(self.obstacle, bbox=box)
        ground = self.ground
        if ground is not None:
            dx, dy = (frames * v for v in self.ground_velocity)
            ground = replace(ground, distance=ground.distance + dx, lateral=ground.lateral + dy,
                             contacts=tuple((cx + dx, cy + dy) for cx, cy in ground.contacts))
        return obstacle, ground

    def observe(self, obstacle: Obstacle, ground: GroundObstacle | None) -> None:
        """Seen again after `misses` unseen frames: the velocities follow (half the new)."""
        frames = self.misses + 1
        keep = 0.5 if self.observations > 1 else 0.0
        self.box_velocity = tuple(
            keep * old + (1 - keep) * (new - last) / frames for old, new, last in zip(
                self.box_velocity, obstacle.bbox, self.obstacle.bbox, strict=True))
        if ground is not None and self.ground is not None:
            change = ((ground.distance - self.ground.distance) / frames,
                      (ground.lateral - self.ground.lateral) / frames)
            self.ground_velocity = tuple(keep * old + (1 - keep) * new for old, new in zip(
                self.ground_velocity, change, strict=True))
        self.obstacle, self.ground, self.misses = obstacle, ground, 0
        self.observations += 1


def box_intersection(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """Pixels two (x, y, width, height) boxes share."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return width * height if width > 0 and height > 0 else 0


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """IoU of two (x, y, width, height) boxes."""
    inter = box_intersection(a, b)
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter) if inter else 0.0


def ground_gap(a: GroundObstacle | None, b: GroundObstacle | None) -> float:
    """Metres between two obstacles' contact centres; inf when either is not on the ground."""
    if a is None or b is None:
        return math.inf
    return math.hypot(a.distance - b.distance, a.lateral - b.lateral)


class Tracker:
    """One camera's tracks; `update` once per frame in which obstacles were computed."""

    def __init__(self, config: TrackingConfig = TrackingConfig()):
        self.config = config
        self._tracks: list[_State] = []
        self._next_id = 1

    def reset(self) -> None:
        self._tracks = []

    def update(self, obstacles: Sequence[Obstacle],
               ground: Sequence[GroundObstacle | None] | None = None,
               size: tuple[int, int] | None = None) -> list[Track]:
        """This frame's obstacles (and where each stands, or None) -> every live track:
        the ones seen now (in the obstacles' order), then the unseen ones still kept. With
        the frame `size` (height, width), a track whose predicted box leaves it ends."""
        config = self.config
        ground = list(ground) if ground is not None else [None] * len(obstacles)
        if len(ground) != len(obstacles):
            raise ConfigurationError(f"{len(obstacles)} obstacles but {len(ground)} positions")
        pairs = []
        for t, track in enumerate(self._tracks):
            box, place = track.predicted(track.misses + 1)
            for d, obstacle in enumerate(obstacles):
                iou = box_iou(box.bbox, obstacle.bbox)
                gap = ground_gap(place, ground[d])
                if iou >= max(config.min_iou, 1e-9) or gap <= config.max_distance:
                    # Overlap first; the ground gap orders pairs that overlap alike.
                    near = gap / config.max_distance if config.max_distance > 0 else 0.0
                    pairs.append(((1.0 - iou) + min(near, 1.0), t, d))
        matched_tracks, matched = set(), {}
        for _, t, d in sorted(pairs):
            if t not in matched_tracks and d not in matched:
                matched_tracks.add(t)
                matched[d] = t
        seen = []
        for d, obstacle in enumerate(obstacles):
            if d in matched:
                state = self._tracks[matched[d]]
                state.observe(obstacle, ground[d])
            else:
                state = _State(self._next_id, obstacle, ground[d])
                self._next_id += 1
            state.seen.append(True)
            seen.append(state)
        held = []
        for t, state in enumerate(self._tracks):
            if t in matched_tracks:
                continue
            state.misses += 1
            state.seen.append(False)
            # Confirmed: held; not yet: kept while the window can still confirm it.
            keep = config.hold_frames if state.confirmed else (
                config.window - config.confirm_frames)
            if state.misses <= keep and _plausible(state, size):
                held.append(state)
        for state in seen + held:
            while len(state.seen) > config.window:
                state.seen.popleft()
            state.confirmed = state.confirmed or sum(state.seen) >= config.confirm_frames
        self._tracks = seen + held
        return [Track(s.id, *s.predicted(s.misses), s.confirmed, s.misses)
                for s in self._tracks]


def _plausible(state: _State, size: tuple[int, int] | None) -> bool:
    """Whether an unseen track's predicted box is still an obstacle in view: at least half
    its last size (a box shrinking away is a blob that merged or split, not motion) and,
    with the frame `size`, at least half inside the frame."""
    box = state.predicted(state.misses)[0].bbox
    last = state.obstacle.bbox
    if box[2] < last[2] / 2 or box[3] < last[3] / 2:
        return False
    return size is None or box_intersection(box, (0, 0, size[1], size[0])) >= (
        box[2] * box[3] / 2)


def reported(tracks: Sequence[Track], config: TrackingConfig) -> list[Track]:
    """What a frame reports: with `confirmed_only`, confirmed tracks (seen or held); without,
    every obstacle seen now plus the held confirmed tracks."""
    return [t for t in tracks if t.confirmed or (not config.confirmed_only and t.misses == 0)]


class CameraTracks:
    """Tracking and ground placement for the offline tools (replay, mine): one tracker per
    camera topic, its newest calibration and its pose (`poses`, by camera topic)."""

    def __init__(self, config: TrackingConfig = TrackingConfig(),
                 poses: dict[str, CameraPose] | None = None):
        self.config = config
        self.poses = dict(poses or {})
        self._trackers: dict[str, Tracker] = {}
        self._cameras: dict[str, CameraModel] = {}

    def calibrate(self, topic: str, camera: CameraModel) -> None:
        """The camera_info beside image topic `topic` (its newest wins)."""
        self._cameras[topic] = camera

    def update(self, topic: str, obstacles: Sequence[Obstacle], mask: np.ndarray | None
               ) -> list[Track]:
        """One frame of camera `topic` -> what it reports (`reported`), ids stable per topic;
        obstacles placed on the ground where the camera has a calibration and a pose."""
        tracker = self._trackers.setdefault(topic, Tracker(self.config))
        camera, pose = self._cameras.get(topic), self.poses.get(topic)
        ground = [None] * len(obstacles)
        if camera is not None and pose is not None and mask is not None:
            camera = camera.resized(mask.shape)
            ground = [locate(o, mask, camera, pose) for o in obstacles]
        size = mask.shape if mask is not None else None
        return reported(tracker.update(obstacles, ground, size), self.config)


def track_fields(track: Track) -> dict:
    """The fields a tool writes per tracked obstacle (distance, lateral and width in metres
    in base_frame, None when not on the ground)."""
    ground = track.ground
    x, y, width, height = track.obstacle.bbox
    return {"id": track.id, "confirmed": track.confirmed, "misses": track.misses,
            "bbox": [x, y, width, height], "area": track.obstacle.area,
            "score_max": track.obstacle.score_max,
            "distance_m": ground.distance if ground else None,
            "lateral_m": ground.lateral if ground else None,
            "width_m": ground.width if ground else None}


def tracked_result(result: FrameResult, tracks: Sequence[Track], config: TrackingConfig
                   ) -> FrameResult:
    """`result` as the node reports it after tracking: obstacles = the reported tracks, each
    with its track id (held ones at their predicted box); with `confirmed_only` the mask
    keeps only the pixels inside the boxes of the tracks seen in this frame."""
    mask = result.mask
    if config.confirmed_only and mask is not None:
        kept = np.zeros_like(mask)
        for track in tracks:
            if track.misses == 0:
                x, y, width, height = track.obstacle.bbox
                kept[y:y + height, x:x + width] = mask[y:y + height, x:x + width]
        mask = kept
    return replace(result, mask=mask, obstacles=[replace(t.obstacle, id=t.id) for t in tracks])
