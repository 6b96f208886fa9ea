"""The ROS-free frame path: frames -> one backend batch -> per-frame maps, masks, obstacles.

The node, `ood-perception run`, `replay`, `evaluate` and `benchmark` all go through
`Pipeline.process`, so they time and threshold frames the same way. With a backend on CUDA
that can keep its outputs there (`run_torch`), upload, resize, threshold and gating run on
the GPU (`gpu_preprocess`, `gpu_postprocess`); results reach the host as numpy either way.
Each frame computes
only the outputs it is asked for (`Outputs`): the node asks for what has subscribers. With a
`Refiner` (S2M), the obstacle mask and obstacles come from SAM's masks instead of the
thresholded score (`core.refine`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from ood_perception.backends.base import Backend
from ood_perception.core.frames import Frame, frame_size
from ood_perception.core.message_buffers import message_array
from ood_perception.core.placement import RESIZE_MODES, Placement, placement
from ood_perception.core.postprocess import (
    Obstacle,
    PostprocessConfig,
    PostprocessResult,
    label_blobs,
    postprocess_model_map,
    render_overlay,
)
from ood_perception.core.preprocess import (
    classes_to_frame,
    make_batch,
    outside_crop_score,
    score_to_frame,
)
from ood_perception.errors import ConfigurationError

if TYPE_CHECKING:
    from ood_perception.core.refine import Refiner

STAGES = ("preprocess", "inference", "resize_back", "postprocess")
# The GPU path also reports the host -> device copy of the frames (batch-wide, like
# preprocess); its resize_back includes the copy of the maps to the host.
GPU_STAGES = ("upload", *STAGES)
# Outputs.score: at the frame's own size, or at the model's input size (a 518x924 float
# map is a quarter of a 1920x1080 one to build and publish).
SCORE_SIZES = ("frame", "model")


@dataclass(frozen=True)
class Outputs:
    """What one frame's result carries; nothing else is computed for it. The mask and
    obstacles do not depend on the rest (they come from the model-resolution map)."""

    score: str | None = "frame"  # one of SCORE_SIZES, or None for no score map
    semantic: bool = True  # class ids at the frame's size (when the graph has them)
    obstacles: bool = True  # obstacle mask at the frame's size and the obstacle list
    overlay: bool = False  # BGR debug image: score colours and obstacle outlines
    s2m: bool = True  # with a refiner: the S2M map (SAM runs only for frames that need it)

    def __post_init__(self) -> None:
        if self.score is not None and self.score not in SCORE_SIZES:
            raise ConfigurationError(
                f"Outputs.score must be one of {SCORE_SIZES} or None, got {self.score!r}")


ALL_OUTPUTS = Outputs()


@dataclass
class FrameResult:
    """One frame's outputs; what its `Outputs` did not ask for is None (or no obstacles).

    `timings` (ms, `STAGES`, or `GPU_STAGES` on the GPU path, then `REFINE_STAGES` when
    refining; "overlay" when one is made): upload, preprocess, inference, sam_encoder and
    sam_decoder are those of the whole batch the frame was in; the other stages are this
    frame's own. Host-path maps live in message-ready memory (`message_buffers.message_bytes`).
    """

    # float32 at frame size, or the model input's scored window (letterbox padding dropped);
    # higher = more anomalous
    anomaly_score: np.ndarray | None
    semantic: np.ndarray | None  # uint8 HxW class ids, None if not asked for or no such output
    mask: np.ndarray | None  # uint8 HxW, 255 on kept obstacle pixels
    obstacles: list[Obstacle]
    timings: dict[str, float] = field(default_factory=dict)
    overlay: np.ndarray | None = None  # BGR uint8 HxWx3
    # S2M map (float32 HxW in [0, 1]) when refining: mask and obstacles then come from it.
    s2m_score: np.ndarray | None = None


@dataclass
class _Maps:
    """One frame's maps on the host: `full_score` feeds the overlay (and the refiner),
    `score` is published."""

    score: np.ndarray | None
    full_score: np.ndarray | None
    semantic: np.ndarray | None
    post: PostprocessResult | None


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def runs_on_gpu(backend: Backend) -> bool:
    """Whether the GPU frame path applies: the backend is on CUDA and returns device tensors."""
    return callable(getattr(backend, "run_torch", None)) and str(
        getattr(backend, "device", "cpu")).startswith("cuda")


def _needs_full_score(outputs: Outputs, refining: bool) -> bool:
    """Whether the frame-size score is made: published, drawn, or the refiner's input."""
    return outputs.score == "frame" or outputs.overlay or refining


def _needs_refiner(outputs: Outputs) -> bool:
    """Whether a frame's asked outputs come from the refiner (mask, obstacles, S2M map)."""
    return outputs.obstacles or outputs.overlay or outputs.s2m


def _placed(post: PostprocessResult, place: Placement, mask: np.ndarray) -> PostprocessResult:
    """The postprocess of a crop's window as that of the whole frame: `mask` (frame size,
    the window written through a view) and the obstacles moved by the window's corner."""
    top, left = place.frame_box.top, place.frame_box.left
    if (top, left) == (0, 0):
        return PostprocessResult(mask=mask, obstacles=post.obstacles)
    return PostprocessResult(mask=mask, obstacles=[replace(
        o, bbox=(o.bbox[0] + left, o.bbox[1] + top, o.bbox[2], o.bbox[3]),
        centroid=(o.centroid[0] + left, o.centroid[1] + top)) for o in post.obstacles])


class HostFrames:
    """Frames resized and batched with OpenCV; the backend's numpy outputs resized back."""

    def __init__(self, backend: Backend, resize_mode: str = "stretch"):
        self.backend = backend
        self.resize_mode = resize_mode
        self._fill = outside_crop_score(backend.info.score_range)

    def prepare(self, frames: Sequence[Frame]) -> tuple[np.ndarray, dict[str, float]]:
        start = time.perf_counter()
        batch = make_batch(frames, self.backend.info.input_size, self.resize_mode)
        return batch, {"preprocess": _ms(start)}

    def infer(self, batch: np.ndarray) -> tuple:
        output = self.backend.run(batch)
        return output.anomaly_score, output.semantic

    def maps(self, scores, semantics, index: int, size: tuple[int, int], outputs: Outputs,
             config: PostprocessConfig, timings: dict[str, float], full: bool) -> _Maps:
        start = time.perf_counter()
        place = placement(self.resize_mode, tuple(size), tuple(scores[index].shape))
        rows, cols = place.model_box.rows, place.model_box.cols
        small = scores[index]
        classes = semantics[index] if semantics is not None else None
        full_score = (score_to_frame(small, place, self._fill,
                                     out=message_array(size, np.float32)) if full else None)
        score = full_score if outputs.score == "frame" else None
        if outputs.score == "model":  # the scored window: letterbox padding dropped
            score = message_array(place.model_box.size, np.float32)
            score[...] = small[rows, cols]
        semantic = None
        if outputs.semantic and classes is not None:
            semantic = classes_to_frame(classes, place, out=message_array(size, np.uint8))
        timings["resize_back"] = _ms(start)
        start = time.perf_counter()
        post = None
        if outputs.obstacles or outputs.overlay:
            mask = message_array(size, np.uint8)  # zeroed: 0 outside a crop
            box = place.frame_box
            post = _placed(postprocess_model_map(
                np.ascontiguousarray(small[rows, cols]),
                None if classes is None else np.ascontiguousarray(classes[rows, cols]),
                box.size, config, mask=mask[box.rows, box.cols]), place, mask)
        timings["postprocess"] = _ms(start)
        return _Maps(score, full_score, semantic, post)


class DeviceFrames:
    """Frames uploaded once, resized and batched on the backend's device; threshold and gating
    run there too, and only the maps asked for and the mask's anomalous window come down.
    Each stage is timed to its end on the device (one synchronise per stage, which costs
    microseconds)."""

    def __init__(self, backend: Backend, resize_mode: str = "stretch"):
        from ood_perception.core import gpu_postprocess
        from ood_perception.core import gpu_preprocess as gpu

        self.backend = backend
        self.resize_mode = resize_mode
        self._fill = outside_crop_score(backend.info.score_range)
        self._gpu = gpu
        self._gpu_post = gpu_postprocess
        self._uploader = gpu.PinnedUploader(backend.device)
        self.device = self._uploader.device

    def prepare(self, frames: Sequence[Frame]) -> tuple:
        gpu = self._gpu
        start = time.perf_counter()
        groups = gpu.upload_groups(frames, self._uploader)
        gpu.synchronize(self.device)
        upload_ms = _ms(start)
        start = time.perf_counter()
        batch = gpu.make_batch(groups, self.backend.info.input_size, self.resize_mode)
        gpu.synchronize(self.device)
        return batch, {"upload": upload_ms, "preprocess": _ms(start)}

    def infer(self, batch) -> tuple:
        outputs = self.backend.run_torch(batch)
        self._gpu.synchronize(self.device)
        return outputs

    def maps(self, scores, semantics, index: int, size: tuple[int, int], outputs: Outputs,
             config: PostprocessConfig, timings: dict[str, float], full: bool) -> _Maps:
        gpu = self._gpu
        start = time.perf_counter()
        place = placement(self.resize_mode, tuple(size), tuple(scores[index].shape))
        box = place.frame_box
        small = scores[index]
        classes = semantics[index] if semantics is not None else None
        wants_mask = outputs.obstacles or outputs.overlay
        gating = bool(config.gating_classes) and classes is not None
        device_score = (gpu.score_to_frame(small, place, self._fill)
                        if wants_mask or full else None)
        device_classes = (gpu.classes_to_frame(classes, place)
                          if classes is not None and (outputs.semantic or gating and wants_mask)
                          else None)
        full_score = gpu.to_host(device_score) if full else None
        score = full_score if outputs.score == "frame" else None
        if outputs.score == "model":  # the scored window: letterbox padding dropped
            score = gpu.to_host(small[place.model_box.rows, place.model_box.cols].contiguous())
        semantic = gpu.to_host(device_classes) if outputs.semantic and classes is not None \
            else None
        gpu.synchronize(self.device)
        timings["resize_back"] = _ms(start)
        start = time.perf_counter()
        post = None
        if wants_mask:  # only the frame's window the model saw: 0 outside a crop
            seen_score = device_score[box.rows, box.cols]
            seen_classes = device_classes[box.rows, box.cols] if gating else None
            binary = self._gpu_post.anomalous(seen_score, seen_classes, config)
            window = self._gpu_post.anomalous_window(binary, seen_score)
            if window is None:
                post = PostprocessResult(mask=np.zeros(size, np.uint8))
            else:
                (top, left), window_binary, window_score = window
                gpu.synchronize(self.device)
                post = label_blobs(window_binary, window_score, config, size,
                                   (top + box.top, left + box.left))
        timings["postprocess"] = _ms(start)
        return _Maps(score, full_score, semantic, post)


class Pipeline:
    """A backend plus a postprocess config; backends split batches their graph cannot take.

    `tensor_path`: None picks the GPU frame path when `runs_on_gpu(backend)`; True forces it
    for any backend with `run_torch` (on CPU it runs the same torch code, for tests).
    `refiner`: S2M refinement of every frame (`core.refine.Refiner`), None for none.
    `resize_mode`: how frames meet the model's aspect (`core.placement.RESIZE_MODES`).
    """

    def __init__(self, backend: Backend, config: PostprocessConfig,
                 tensor_path: bool | None = None, refiner: Refiner | None = None,
                 resize_mode: str = "stretch"):
        if resize_mode not in RESIZE_MODES:
            raise ConfigurationError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, "
                                     f"got {resize_mode!r}")
        self.backend = backend
        self.refiner = refiner
        self.resize_mode = resize_mode
        self._config = self._checked(config)
        if tensor_path is None:
            tensor_path = runs_on_gpu(backend)
        if tensor_path and not callable(getattr(backend, "run_torch", None)):
            raise ConfigurationError(
                f"backend {backend.name!r} has no run_torch, so the tensor frame path cannot "
                "be used with it; leave tensor_path unset")
        frames_path = DeviceFrames if tensor_path else HostFrames
        self._frames = frames_path(backend, resize_mode)

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

    def process(self, frames: Sequence[Frame],
                outputs: Outputs | Sequence[Outputs] = ALL_OUTPUTS) -> list[FrameResult]:
        """Frames of any sizes (RGB uint8 HxWx3 arrays or `BgrFrame`s, e.g. several cameras)
        -> one result per frame; `outputs` for all frames or one per frame."""
        if not frames:
            return []
        wanted = [outputs] * len(frames) if isinstance(outputs, Outputs) else list(outputs)
        if len(wanted) != len(frames) or not all(isinstance(w, Outputs) for w in wanted):
            raise ConfigurationError(
                f"process needs one Outputs for all {len(frames)} frames or one per frame")
        config = self._config
        batch, batch_timings = self._frames.prepare(frames)
        start = time.perf_counter()
        scores, semantics = self._frames.infer(batch)
        batch_timings["inference"] = _ms(start)
        refine = [self.refiner is not None and _needs_refiner(w) for w in wanted]
        all_maps, all_timings = [], []
        for index, (frame, want) in enumerate(zip(frames, wanted, strict=True)):
            if refine[index]:  # the refiner needs score, classes and components at frame size
                want = replace(want, semantic=True, obstacles=True)
            timings = dict(batch_timings)
            all_maps.append(self._frames.maps(scores, semantics, index, frame_size(frame), want,
                                              config, timings,
                                              _needs_full_score(want, refine[index])))
            all_timings.append(timings)
        refined = self._refine(frames, batch, all_maps, refine, config)
        results = []
        for index, (frame, want) in enumerate(zip(frames, wanted, strict=True)):
            maps, timings = all_maps[index], all_timings[index]
            post, s2m_score = maps.post, None
            if index in refined:
                post, s2m_score = refined[index].post, refined[index].s2m_score
                timings.update(refined[index].timings)
            overlay = None
            if want.overlay:
                start = time.perf_counter()
                overlay = self._render(frame, maps.full_score, post.mask)
                timings["overlay"] = _ms(start)
            kept = post if want.obstacles else None
            results.append(FrameResult(
                anomaly_score=maps.score, semantic=maps.semantic if want.semantic else None,
                mask=kept.mask if kept else None, obstacles=kept.obstacles if kept else [],
                timings=timings, overlay=overlay,
                s2m_score=s2m_score if want.s2m else None))
        return results

    def _refine(self, frames: Sequence[Frame], batch, maps: list[_Maps], refine: list[bool],
                config: PostprocessConfig) -> dict:
        """Frame index -> the refiner's `core.refine.RefinedFrame`, for the frames marked in
        `refine` only (SAM's encoder runs on their part of the batch)."""
        chosen = [index for index, wanted in enumerate(refine) if wanted]
        if not chosen:
            return {}
        if self.resize_mode != "stretch":  # SAM's masks map back from a stretched frame
            batch = None
        elif len(chosen) < len(frames):
            batch = batch[chosen]
        refined = self.refiner.refine(
            [frames[i] for i in chosen], batch, [maps[i].full_score for i in chosen],
            [maps[i].semantic for i in chosen], [maps[i].post for i in chosen], config)
        return dict(zip(chosen, refined, strict=True))

    def _render(self, frame: Frame, score: np.ndarray, mask: np.ndarray,
                alpha: float = 0.5) -> np.ndarray:
        return render_overlay(frame, score, mask, self.backend.info.score_range, alpha)

    def overlay(self, frame: Frame, result: FrameResult, alpha: float = 0.5) -> np.ndarray:
        """BGR uint8 debug image, coloured over the graph's `score_range` when it has one;
        `result` needs its frame-size score and mask (the default `Outputs`)."""
        if result.anomaly_score is None or result.mask is None or (
                result.anomaly_score.shape != frame_size(frame)):
            raise ConfigurationError("an overlay needs the frame-size score and the mask: "
                                     "process with Outputs(score='frame', obstacles=True) or "
                                     "ask for Outputs(overlay=True)")
        return self._render(frame, result.anomaly_score, result.mask, alpha)
