"""The ROS-free frame path: frames -> one backend batch -> per-frame maps, masks, obstacles.

The node, `ood-perception run`, `replay`, `evaluate` and `benchmark` all go through
`Pipeline.process`, so they time and threshold frames the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ood_perception.backends.base import Backend
from ood_perception.errors import ConfigurationError
from ood_perception.postprocess import Obstacle, PostprocessConfig, postprocess, render_overlay
from ood_perception.preprocess import make_batch, resize_classes, resize_score

STAGES = ("preprocess", "inference", "resize_back", "postprocess")


@dataclass
class FrameResult:
    """One frame's outputs at its own size.

    `timings` (ms): preprocess and inference are those of the whole batch the frame was in;
    resize_back and postprocess are this frame's own.
    """

    anomaly_score: np.ndarray  # float32 HxW, higher = more anomalous
    semantic: np.ndarray | None  # uint8 HxW class ids, None if the graph has none
    mask: np.ndarray  # uint8 HxW, 255 on kept obstacle pixels
    obstacles: list[Obstacle]
    timings: dict[str, float] = field(default_factory=dict)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class Pipeline:
    """A backend plus a postprocess config; backends split batches their graph cannot take."""

    def __init__(self, backend: Backend, config: PostprocessConfig):
        self.backend = backend
        self._config = self._checked(config)

    @staticmethod
    def _checked(config: PostprocessConfig) -> PostprocessConfig:
        if not isinstance(config, PostprocessConfig):
            raise ConfigurationError(f"expected a PostprocessConfig, got {type(config).__name__}")
        config.validate()
        return config

    @property
    def config(self) -> PostprocessConfig:
        return self._config

    def update_config(self, config: PostprocessConfig) -> None:
        """Swap the postprocess config; a batch in flight finishes with the one it started with."""
        self._config = self._checked(config)

    def process(self, frames: list[np.ndarray]) -> list[FrameResult]:
        """RGB uint8 HxWx3 frames of any sizes (e.g. several cameras) -> one result per frame."""
        if not frames:
            return []
        config = self._config
        start = time.perf_counter()
        batch = make_batch(frames, self.backend.info.input_size)
        preprocess_ms = _ms(start)
        start = time.perf_counter()
        output = self.backend.run(batch)
        inference_ms = _ms(start)
        results = []
        for index, frame in enumerate(frames):
            size = frame.shape[:2]
            start = time.perf_counter()
            score = resize_score(output.anomaly_score[index], size)
            semantic = (resize_classes(output.semantic[index], size)
                        if output.semantic is not None else None)
            resize_ms = _ms(start)
            start = time.perf_counter()
            post = postprocess(score, semantic, config)
            results.append(FrameResult(
                anomaly_score=score, semantic=semantic, mask=post.mask,
                obstacles=post.obstacles,
                timings={"preprocess": preprocess_ms, "inference": inference_ms,
                         "resize_back": resize_ms, "postprocess": _ms(start)},
            ))
        return results

    def overlay(self, frame: np.ndarray, result: FrameResult, alpha: float = 0.5) -> np.ndarray:
        """BGR uint8 debug image, coloured over the graph's `score_range` when it has one."""
        return render_overlay(
            frame, result.anomaly_score, result.mask, self.backend.info.score_range, alpha)
