"""How far a backend's outputs are from a reference's on the same frames, and how far is fine.

Differences are stated relative to the reference's score spread (1st to 99th percentile), so
one tolerance fits every score scale; obstacle masks come from `postprocess` at the
reference's 95th percentile (top 5% of pixels anomalous, no blob filtering).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ood_perception.core.postprocess import PostprocessConfig, postprocess
from ood_perception.errors import ConfigurationError

MASK_QUANTILE = 95.0


@dataclass(frozen=True)
class Tolerance:
    """Largest accepted max |score difference| / spread, smallest mask IoU and class match."""

    max_rel: float
    min_iou: float
    min_class_agreement: float


# Measured on CPU with random weights (ViT-B UEM DD/GG at 224x448, Swin-T UNO at 256x512):
# bf16 autocast max_rel 0.024 / 0.109 / 0.018, IoU >= 0.953; fp16 autocast max_rel 0.002 /
# 0.019 / 0.003, IoU >= 0.992. The limits leave about 2.5x of headroom for GPU kernels.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_rel=1e-3, min_iou=0.99, min_class_agreement=0.999),
    "fp16": Tolerance(max_rel=0.05, min_iou=0.97, min_class_agreement=0.99),
    "bf16": Tolerance(max_rel=0.25, min_iou=0.90, min_class_agreement=0.97),
}


@dataclass(frozen=True)
class Agreement:
    """`other` against `reference` over a batch of frames."""

    max_abs: float
    max_rel: float
    mask_iou: float
    class_agreement: float | None  # None when a side has no semantic output
    spread: float
    threshold: float

    def failures(self, tolerance: Tolerance) -> list[str]:
        """What exceeds `tolerance`, one phrase each; empty when within it."""
        problems = []
        if not self.max_rel <= tolerance.max_rel:
            problems.append(f"max score difference {self.max_rel:.2e} of the spread > "
                            f"{tolerance.max_rel:.0e}")
        if not self.mask_iou >= tolerance.min_iou:
            problems.append(f"mask IoU {self.mask_iou:.4f} < {tolerance.min_iou}")
        if self.class_agreement is not None and not (
                self.class_agreement >= tolerance.min_class_agreement):
            problems.append(f"class agreement {self.class_agreement:.4f} < "
                            f"{tolerance.min_class_agreement}")
        return problems

    def to_dict(self) -> dict:
        return asdict(self)


def _mask(score: np.ndarray, threshold: float) -> np.ndarray:
    config = PostprocessConfig(score_threshold=threshold, min_obstacle_area=0)
    return postprocess(np.ascontiguousarray(score, dtype=np.float32), None, config).mask > 0


def compare(reference_score: np.ndarray, other_score: np.ndarray,
            reference_classes: np.ndarray | None = None,
            other_classes: np.ndarray | None = None) -> Agreement:
    """float32 [B, H, W] (or [H, W]) scores, optional uint8 classes -> Agreement."""
    reference = np.asarray(reference_score, dtype=np.float32)
    other = np.asarray(other_score, dtype=np.float32)
    if reference.shape != other.shape:
        raise ConfigurationError(
            f"score shapes differ: {reference.shape} vs {other.shape}; compare the same frames")
    low, high, threshold = np.percentile(reference, [1.0, 99.0, MASK_QUANTILE])
    spread = float(high - low) or 1.0
    difference = np.abs(reference - other)
    max_abs = float(difference.max()) if np.isfinite(difference).all() else float("inf")
    frames_ref = reference.reshape(-1, *reference.shape[-2:])
    frames_other = other.reshape(-1, *other.shape[-2:])
    inter = union = 0
    for ref_frame, other_frame in zip(frames_ref, frames_other, strict=True):
        a, b = _mask(ref_frame, float(threshold)), _mask(other_frame, float(threshold))
        inter += int(np.count_nonzero(a & b))
        union += int(np.count_nonzero(a | b))
    classes = None
    if reference_classes is not None and other_classes is not None:
        classes = float(np.mean(np.asarray(reference_classes) == np.asarray(other_classes)))
    return Agreement(max_abs=max_abs, max_rel=max_abs / spread,
                     mask_iou=inter / union if union else 1.0, class_agreement=classes,
                     spread=spread, threshold=float(threshold))
