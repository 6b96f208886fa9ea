"""Obstacles on the ground against a drive's truth: distance error by range, flicker, false
obstacles per frame, with and without tracking.

A reported obstacle matches a true one when their image boxes overlap by at least half of
the smaller box (greedy, best overlap first, one to one). Counted over true obstacles
`RANGE` metres ahead with at least `min_pixels` visible: the distance error of each match
by range bin (from its low edge up to its high one), how often one is found (recall), and
flicker: frames in which a true obstacle seen in both frames appears or disappears from the
report. A reported obstacle that matches no true obstacle at any range is a false obstacle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ood_perception.core.ground import CameraModel, CameraPose, GroundObstacle, locate
from ood_perception.core.pipeline import Outputs, Pipeline
from ood_perception.core.tracking import Tracker, TrackingConfig, reported
from ood_perception.synthetic.scenes import SceneCalibration, SceneFrame, SceneObstacle

RANGE = (5.0, 50.0)
RANGE_BINS = ((5.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, 40.0), (40.0, 50.0))
MIN_OVERLAP = 0.5
# The pipeline's outputs a measurement needs: the obstacle mask and list, nothing else.
OBSTACLES_ONLY = Outputs(score=None, semantic=False, obstacles=True, overlay=False, s2m=False)


@dataclass(frozen=True)
class ReportedObstacle:
    """What a frame reports: an image box and, when on the ground, where it stands."""

    bbox: tuple[int, int, int, int]
    ground: GroundObstacle | None
    track_id: int | None = None


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller of two (x, y, width, height) boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    return width * height / float(max(min(a[2] * a[3], b[2] * b[3]), 1))


def match(truth: Sequence[SceneObstacle], found: Sequence[ReportedObstacle]
          ) -> dict[int, int]:
    """Reported index -> true index, greedy by overlap (at least MIN_OVERLAP)."""
    pairs = sorted(((overlap(t.bbox, f.bbox), i, j) for i, t in enumerate(truth)
                    for j, f in enumerate(found)), reverse=True)
    matched, used = {}, set()
    for score, i, j in pairs:
        if score < MIN_OVERLAP:
            break
        if i not in used and j not in matched:
            used.add(i)
            matched[j] = i
    return matched


@dataclass
class GroundMetrics:
    """Accumulates frames of one drive; `summary()` gives the figures."""

    min_pixels: int = 20
    errors: dict[tuple[float, float], list[float]] = field(default_factory=dict)
    lateral_errors: list[float] = field(default_factory=list)
    eligible: dict[tuple[float, float], int] = field(default_factory=dict)
    frames: int = 0
    false_obstacles: int = 0
    flicker: int = 0
    obstacle_frames: int = 0
    _last: dict[int, bool] = field(default_factory=dict)

    def update(self, truth: Sequence[SceneObstacle], found: Sequence[ReportedObstacle]) -> None:
        matched = match(truth, found)
        self.frames += 1
        self.false_obstacles += sum(1 for j in range(len(found)) if j not in matched)
        found_for = {i: found[j] for j, i in matched.items()}
        state = {}
        for i, obstacle in enumerate(truth):
            if not (RANGE[0] <= obstacle.distance <= RANGE[1]
                    and obstacle.pixels >= self.min_pixels):
                continue
            span = next(b for b in RANGE_BINS if b[0] <= obstacle.distance < b[1]
                        or obstacle.distance == b[1] == RANGE[1])
            self.eligible[span] = self.eligible.get(span, 0) + 1
            self.obstacle_frames += 1
            report = found_for.get(i)
            state[obstacle.index] = report is not None
            if report is not None and report.ground is not None:
                self.errors.setdefault(span, []).append(report.ground.distance
                                                        - obstacle.distance)
                self.lateral_errors.append(report.ground.lateral - obstacle.lateral)
        self.flicker += sum(1 for index, now in state.items()
                            if index in self._last and self._last[index] != now)
        self._last = state

    def summary(self) -> dict:
        bins = []
        for span in RANGE_BINS:
            errors = np.abs(np.asarray(self.errors.get(span, []), np.float64))
            signed = np.asarray(self.errors.get(span, []), np.float64)
            count = self.eligible.get(span, 0)
            bins.append({
                "range_m": list(span), "true_obstacle_frames": count,
                "found": int(len(errors)),
                "recall": len(errors) / count if count else None,
                "distance_error_median_m": float(np.median(errors)) if len(errors) else None,
                "distance_error_mean_m": float(errors.mean()) if len(errors) else None,
                "distance_bias_m": float(signed.mean()) if len(signed) else None,
                "relative_error_median": float(np.median(
                    errors / np.mean(span))) if len(errors) else None})
        lateral = np.abs(np.asarray(self.lateral_errors, np.float64))
        return {"frames": self.frames, "true_obstacle_frames": self.obstacle_frames,
                "flicker_events": self.flicker,
                "flicker_per_100_obstacle_frames": (100.0 * self.flicker / self.obstacle_frames
                                                    if self.obstacle_frames else None),
                "false_obstacles": self.false_obstacles,
                "false_obstacles_per_frame": (self.false_obstacles / self.frames
                                              if self.frames else None),
                "lateral_error_median_m": float(np.median(lateral)) if len(lateral) else None,
                "by_range": bins}


def measure_drive(pipeline: Pipeline, frames: Iterable[SceneFrame],
                  calibration: SceneCalibration, tracking: TrackingConfig = TrackingConfig(),
                  batch: int = 4, min_pixels: int = 20) -> dict:
    """A drive through `pipeline`: the figures of every detection ("raw") and of the
    confirmed tracks, seen or held ("tracked": what the node publishes with
    `track_confirmed_only`), in one pass."""
    tracking = replace(tracking, confirmed_only=True)
    camera = CameraModel(calibration.k, (), "plumb_bob", calibration.size)
    pose = CameraPose.from_extrinsics(calibration.extrinsics)
    tracker = Tracker(tracking)
    raw, tracked = GroundMetrics(min_pixels), GroundMetrics(min_pixels)
    pending: list[SceneFrame] = []

    def flush() -> None:
        results = pipeline.process([f.rgb for f in pending], OBSTACLES_ONLY)
        for frame, result in zip(pending, results, strict=True):
            ground = [locate(o, result.mask, camera, pose) for o in result.obstacles]
            raw.update(frame.obstacles, [ReportedObstacle(o.bbox, g)
                                         for o, g in zip(result.obstacles, ground, strict=True)])
            tracks = reported(tracker.update(result.obstacles, ground, result.mask.shape),
                              tracking)
            tracked.update(frame.obstacles, [ReportedObstacle(t.obstacle.bbox, t.ground, t.id)
                                             for t in tracks])
        pending.clear()

    for frame in frames:
        pending.append(frame)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return {"raw": raw.summary(), "tracked": tracked.summary()}
