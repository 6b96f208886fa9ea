"""The ROS-free frame path: frames -> one backend batch -> per-frame maps, masks, obstacles.

The node, `ood-perception run`, `replay`, `evaluate` and `benchmark` all go through
`Pipeline.process`, so they time and threshold frames the same way. With a backend on CUDA
that can keep its outputs there (`run_torch`), upload, resize and the maps back to frame
size run on the GPU (`gpu_preprocess`); results reach the host as numpy either way. With a
`Refiner` (S2M), the obstacle mask and obstacles come from SAM's masks instead of the
thresholded score (`core.refine`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ood_perception.backends.base import Backend
from ood_perception.core.postprocess import (
    Obstacle,
    PostprocessConfig,
    PostprocessResult,
    postprocess,
    render_overlay,
)
from ood_perception.core.preprocess import make_batch, resize_classes, resize_score
from ood_perception.errors import ConfigurationError

if TYPE_CHECKING:
    from ood_perception.core.refine import Refiner

STAGES = ("preprocess", "inference", "resize_back", "postprocess")
# The GPU path also reports the host -> device copy of the frames (batch-wide, like
# preprocess); its resize_back includes the copy of the maps to the host.
GPU_STAGES = ("upload", *STAGES)


@dataclass
class FrameResult:
    """One frame's outputs at its own size.

    `timings` (ms, `STAGES`, or `GPU_STAGES` on the GPU path, then `REFINE_STAGES` when
    refining): upload, preprocess, inference, sam_encoder and sam_decoder are those of the
    whole batch the frame was in; the other stages are this frame's own.
    """

    anomaly_score: np.ndarray  # float32 HxW, higher = more anomalous
    semantic: np.ndarray | None  # uint8 HxW class ids, None if the graph has none
    mask: np.ndarray  # uint8 HxW, 255 on kept obstacle pixels
    obstacles: list[Obstacle]
    timings: dict[str, float] = field(default_factory=dict)
    # S2M map (float32 HxW in [0, 1]) when refining: mask and obstacles then come from it.
    s2m_score: np.ndarray | None = None


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def runs_on_gpu(backend: Backend) -> bool:
    """Whether the GPU frame path applies: the backend is on CUDA and returns device tensors."""
    return callable(getattr(backend, "run_torch", None)) and str(
        getattr(backend, "device", "cpu")).startswith("cuda")


class HostFrames:
    """Frames resized and batched with OpenCV; the backend's numpy outputs resized back."""

    def __init__(self, backend: Backend):
        self.backend = backend

    def prepare(self, frames: list[np.ndarray]) -> tuple[np.ndarray, dict[str, float]]:
        start = time.perf_counter()
        batch = make_batch(frames, self.backend.info.input_size)
        return batch, {"preprocess": _ms(start)}

    def infer(self, batch: np.ndarray) -> tuple:
        output = self.backend.run(batch)
        return output.anomaly_score, output.semantic

    def to_frame(self, scores, semantics, index: int,
                 size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        score = resize_score(scores[index], size)
        semantic = resize_classes(semantics[index], size) if semantics is not None else None
        return score, semantic


class DeviceFrames:
    """Frames uploaded once, resized and batched on the backend's device; only the final
    per-frame maps come down. Each stage is timed to its end on the device (one synchronise
    per stage, which costs microseconds)."""

    def __init__(self, backend: Backend):
        from ood_perception.core import gpu_preprocess as gpu

        self.backend = backend
        self._gpu = gpu
        self._uploader = gpu.PinnedUploader(backend.device)
        self.device = self._uploader.device

    def prepare(self, frames: list[np.ndarray]) -> tuple:
        gpu = self._gpu
        start = time.perf_counter()
        groups = gpu.upload_groups(frames, self._uploader)
        gpu.synchronize(self.device)
        upload_ms = _ms(start)
        start = time.perf_counter()
        batch = gpu.make_batch(groups, self.backend.info.input_size)
        gpu.synchronize(self.device)
        return batch, {"upload": upload_ms, "preprocess": _ms(start)}

    def infer(self, batch) -> tuple:
        outputs = self.backend.run_torch(batch)
        self._gpu.synchronize(self.device)
        return outputs

    def to_frame(self, scores, semantics, index: int,
                 size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        gpu = self._gpu
        score = gpu.to_host(gpu.resize_score(scores[index], size))
        semantic = (gpu.to_host(gpu.resize_classes(semantics[index], size))
                    if semantics is not None else None)
        gpu.synchronize(self.device)
        return score, semantic


class Pipeline:
    """A backend plus a postprocess config; backends split batches their graph cannot take.

    `tensor_path`: None picks the GPU frame path when `runs_on_gpu(backend)`; True forces it
    for any backend with `run_torch` (on CPU it runs the same torch code, for tests).
    `refiner`: S2M refinement of every frame (`core.refine.Refiner`), None for none.
    """

    def __init__(self, backend: Backend, config: PostprocessConfig,
                 tensor_path: bool | None = None, refiner: Refiner | None = None):
        self.backend = backend
        self.refiner = refiner
        self._config = self._checked(config)
        if tensor_path is None:
            tensor_path = runs_on_gpu(backend)
        if tensor_path and not callable(getattr(backend, "run_torch", None)):
            raise ConfigurationError(
                f"backend {backend.name!r} has no run_torch, so the tensor frame path cannot "
                "be used with it; leave tensor_path unset")
        self._frames = DeviceFrames(backend) if tensor_path else HostFrames(backend)

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
        batch, batch_timings = self._frames.prepare(frames)
        start = time.perf_counter()
        scores, semantics = self._frames.infer(batch)
        batch_timings["inference"] = _ms(start)
        results = []
        for index, frame in enumerate(frames):
            start = time.perf_counter()
            score, semantic = self._frames.to_frame(scores, semantics, index, frame.shape[:2])
            resize_ms = _ms(start)
            start = time.perf_counter()
            post = postprocess(score, semantic, config)
            results.append(FrameResult(
                anomaly_score=score, semantic=semantic, mask=post.mask, obstacles=post.obstacles,
                timings={**batch_timings, "resize_back": resize_ms, "postprocess": _ms(start)}))
        return self._refined(frames, batch, results, config)

    def _refined(self, frames: list[np.ndarray], batch, results: list[FrameResult],
                 config: PostprocessConfig) -> list[FrameResult]:
        """Replace each result's mask and obstacles by the refiner's (when there is one)."""
        if self.refiner is None:
            return results
        refined = self.refiner.refine(
            frames, batch, [r.anomaly_score for r in results], [r.semantic for r in results],
            [PostprocessResult(mask=r.mask, obstacles=r.obstacles) for r in results], config)
        for result, frame in zip(results, refined, strict=True):
            result.mask, result.obstacles = frame.post.mask, frame.post.obstacles
            result.s2m_score = frame.s2m_score
            result.timings.update(frame.timings)
        return results

    def overlay(self, frame: np.ndarray, result: FrameResult, alpha: float = 0.5) -> np.ndarray:
        """BGR uint8 debug image, coloured over the graph's `score_range` when it has one."""
        return render_overlay(
            frame, result.anomaly_score, result.mask, self.backend.info.score_range, alpha)
