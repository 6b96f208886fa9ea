"""S2M refinement, ROS-free: box prompts from each frame's score, SAM masks, one map per frame.

`Refiner.refine` takes what `Pipeline` already has (frames, their uint8 model batch, score maps
at frame size, postprocess results) and returns per frame the S2M map in [0, 1] (the S2M paper,
section 6.2: each pixel the lowest confidence among the SAM masks covering it, 0 elsewhere),
the obstacle mask (S2M map > 0) and the obstacles as its connected components. Box prompts
come from the official detector run on the score map, or from the postprocess components of
any score (`models.s2m.proposals`). SAM's image encoder runs once per batch and its decoder
once for all boxes of all frames.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ood_perception.backends.sam import SamRunner
from ood_perception.core.postprocess import PostprocessConfig, PostprocessResult, postprocess
from ood_perception.core.preprocess import make_batch
from ood_perception.errors import ConfigurationError
from ood_perception.models.s2m import REFINE_MODES
from ood_perception.models.s2m.detector import ScoreBoxDetector
from ood_perception.models.s2m.merge import merge_masks
from ood_perception.models.s2m.proposals import ProposalConfig, box_proposals
from ood_perception.models.sam.deploy import postprocess_masks
from ood_perception.models.sam.sam import boxes_to_sam

BOX_SOURCES = ("components", "detector")
# Timed stages (ms): the encoder and decoder per batch, the others per frame.
REFINE_STAGES = ("sam_encoder", "box_prompts", "sam_decoder", "merge")


@dataclass(frozen=True)
class RefineConfig:
    """How frames are refined; validated on construction."""

    # "none": the thresholded score is the obstacle mask; "s2m": SAM's masks are.
    mode: str = "none"
    # Box prompts from the score's postprocess "components", or the S2M "detector" on the
    # score map (it only fits the score scale it was trained on).
    boxes: str = "components"
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    # The detector sees score * this (the S2M paper scales entropy scores by 20 for its detector).
    detector_score_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in REFINE_MODES:
            raise ConfigurationError(f"refine must be one of {', '.join(REFINE_MODES)}, "
                                     f"got {self.mode!r}")
        if self.boxes not in BOX_SOURCES:
            raise ConfigurationError(f"box prompts must come from one of "
                                     f"{', '.join(BOX_SOURCES)}, got {self.boxes!r}")
        scale = self.detector_score_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (
                math.isfinite(scale) and scale > 0):
            raise ConfigurationError(f"detector score scale must be a positive number, "
                                     f"got {scale!r}")

    @classmethod
    def s2m(cls, detector: bool, max_boxes: int, score_scale: float) -> RefineConfig:
        """S2M with box prompts from the detector (when its checkpoint is given) or from the
        score's components; the settings `run`, `evaluate` and the node expose."""
        return cls(mode="s2m", boxes="detector" if detector else "components",
                   proposals=ProposalConfig(max_boxes=max_boxes),
                   detector_score_scale=score_scale)


@dataclass
class RefinedFrame:
    """One frame's refinement at the frame's size."""

    s2m_score: np.ndarray  # float32 HxW in [0, 1]: 0 background, else a box's confidence
    post: PostprocessResult  # mask (S2M map > 0, gated and filtered) and its components
    boxes: np.ndarray  # float32 [K, 4] box prompts x0, y0, x1, y1 in frame pixels
    confidences: np.ndarray  # float32 [K]
    timings: dict[str, float] = field(default_factory=dict)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _finished(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` once the device has computed it, so each stage is timed to its end."""
    if tensor.is_cuda:
        torch.cuda.synchronize(tensor.device)
    return tensor


class Refiner:
    """A SAM runner, the refine config and (for `boxes="detector"`) the S2M detector.

    `score_range`: the anomaly graph's typical score range, which maps component scores to
    confidences; None uses each frame's threshold..maximum.
    """

    def __init__(self, runner: SamRunner, config: RefineConfig,
                 detector: ScoreBoxDetector | None = None,
                 score_range: tuple[float, float] | None = None):
        if config.mode != "s2m":
            raise ConfigurationError("a Refiner needs refine mode 's2m'")
        if config.boxes == "detector" and detector is None:
            raise ConfigurationError("box prompts from the detector need its checkpoint "
                                     "(--s2m-detector)")
        self.runner = runner
        self.config = config
        self.detector = detector
        self.score_range = score_range

    def _component_boxes(self, post: PostprocessResult, score: np.ndarray, threshold: float,
                         size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        obstacles = post.obstacles
        boxes = np.array([[o.bbox[0], o.bbox[1], o.bbox[0] + o.bbox[2], o.bbox[1] + o.bbox[3]]
                          for o in obstacles], np.float64).reshape(-1, 4)
        score_range = self.score_range
        if score_range is None:
            score_range = (threshold, float(np.nanmax(score)) if score.size else threshold)
        return box_proposals(boxes, [o.area for o in obstacles],
                             [o.score_mean for o in obstacles], score_range, size,
                             self.config.proposals)

    def _detector_boxes(self, scores: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        device = next(self.detector.parameters()).device
        maps = [torch.from_numpy(np.ascontiguousarray(s, np.float32)).to(device)
                * self.config.detector_score_scale for s in scores]
        with torch.no_grad():
            detections = self.detector(maps)
        return [(d.boxes.cpu().numpy(), d.scores.cpu().numpy()) for d in detections]

    def refine(self, frames: list[np.ndarray], batch: np.ndarray | torch.Tensor | None,
               scores: list[np.ndarray], semantics: list[np.ndarray | None],
               posts: list[PostprocessResult],
               config: PostprocessConfig) -> list[RefinedFrame]:
        """frames (RGB uint8 HxWx3), their model batch (uint8 [B, h, w, 3] on the host or the
        runner's device, stretched; None: made here), score maps and class maps at frame
        size, and their postprocess results -> one RefinedFrame each."""
        info = self.runner.info
        start = time.perf_counter()
        if batch is None or tuple(batch.shape[1:3]) != info.input_size:  # none, or another size
            batch = make_batch(frames, info.input_size)
        embeddings = _finished(self.runner.encode(batch))
        encoder_ms = _ms(start)
        prompts, prompt_ms = [], []
        if self.config.boxes == "detector":
            start = time.perf_counter()
            prompts = self._detector_boxes(scores)
            prompt_ms = [_ms(start) / len(frames)] * len(frames)
        else:
            for score, post, frame in zip(scores, posts, frames, strict=True):
                start = time.perf_counter()
                prompts.append(self._component_boxes(post, score, config.score_threshold,
                                                     frame.shape[:2]))
                prompt_ms.append(_ms(start))
        start = time.perf_counter()
        sam_boxes = [boxes_to_sam(torch.from_numpy(boxes), frame.shape[:2], info.resized)
                     for (boxes, _), frame in zip(prompts, frames, strict=True)]
        index = torch.cat([torch.full((len(b),), i, dtype=torch.int64)
                           for i, b in enumerate(sam_boxes)])
        low_res = _finished(self.runner.decode(embeddings, torch.cat(sam_boxes), index)[0])
        decoder_ms = _ms(start)
        refined_config = replace(config, score_threshold=0.0)
        results, first = [], 0
        for i, frame in enumerate(frames):
            start = time.perf_counter()
            boxes, confidences = prompts[i]
            count = len(boxes)
            masks = postprocess_masks(low_res[first:first + count], info.img_size, info.resized,
                                      frame.shape[:2])
            first += count
            s2m = merge_masks(masks, torch.from_numpy(confidences).to(masks.device))
            s2m = s2m.cpu().numpy()
            post = postprocess(s2m, semantics[i], refined_config)
            results.append(RefinedFrame(
                s2m_score=s2m, post=post, boxes=boxes, confidences=confidences,
                timings={"sam_encoder": encoder_ms, "box_prompts": prompt_ms[i],
                         "sam_decoder": decoder_ms, "merge": _ms(start)}))
        return results


def open_refiner(sam_path: str, config: RefineConfig, backend: str = "onnxruntime",
                 device: str = "cpu", detector_checkpoint: str | None = None,
                 score_range: tuple[float, float] | None = None, **options) -> Refiner:
    """A Refiner from files: SAM's graphs (`export --model sam-...`) opened with `backend`,
    and for detector prompts the S2M detector's detectron2 checkpoint (run in torch on
    `device`)."""
    from ood_perception.backends.sam import create_sam_runner

    detector = None
    if config.boxes == "detector":
        if detector_checkpoint is None:
            raise ConfigurationError("box prompts from the detector need its checkpoint "
                                     "(--s2m-detector)")
        from ood_perception.models.s2m.checkpoints import load_detector_checkpoint

        detector = load_detector_checkpoint(ScoreBoxDetector(), detector_checkpoint)
        detector = detector.to(device).eval()
    elif detector_checkpoint is not None:
        raise ConfigurationError("a detector checkpoint needs box prompts from the detector "
                                 "(boxes 'detector')")
    runner = create_sam_runner(backend, sam_path, device=device, **options)
    return Refiner(runner, config, detector, score_range)
