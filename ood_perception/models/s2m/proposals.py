"""Detector-free S2M prompts: boxes from any score's connected components.

The official prompt generator is a detector trained on one method's score scale; these boxes
come from the postprocess components of any score (UEM, UNO, EAM, RbA, DOoD) instead. Boxes
grown by a margin that overlap belong to one object's fragments and are merged; the
`max_boxes` most confident remain. A box's confidence is the area-weighted mean score of its
components, mapped to [0, 1] over the score's range (the merge writes it into the S2M map).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ood_perception.errors import ConfigurationError

# Confidence floor: a prompt's mask must stay distinguishable from the map's 0 background.
MIN_CONFIDENCE = 1e-3


@dataclass(frozen=True)
class ProposalConfig:
    """How components become box prompts; validated on construction."""

    # Each side of a component's box grows by this fraction of the box's size...
    margin: float = 0.1
    # ...and by at least this many pixels (blurry scores cut objects short).
    min_margin: int = 4
    # Merge components whose grown boxes overlap into one prompt.
    merge_fragments: bool = True
    # At most this many prompts per frame, the most confident first.
    max_boxes: int = 16

    def __post_init__(self) -> None:
        if not (isinstance(self.margin, (int, float)) and 0.0 <= self.margin <= 2.0):
            raise ConfigurationError(f"proposal margin must be in [0, 2], got {self.margin!r}")
        for name in ("min_margin", "max_boxes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"{name} must be an integer >= 0, got {value!r}")
        if self.max_boxes < 1:
            raise ConfigurationError(f"max_boxes must be >= 1, got {self.max_boxes}")


def _grow(boxes: np.ndarray, cfg: ProposalConfig, size: tuple[int, int]) -> np.ndarray:
    """[M, 4] x0, y0, x1, y1 grown by the margin on every side, clipped to the frame."""
    extent = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
    grow = np.maximum(extent * cfg.margin, cfg.min_margin)
    grown = boxes + np.array([-1.0, -1.0, 1.0, 1.0]) * grow
    height, width = size
    return np.clip(grown, 0.0, [width, height, width, height])


def _overlap_groups(boxes: np.ndarray) -> np.ndarray:
    """Group id per box; boxes that overlap (directly or through others) share one."""
    count = len(boxes)
    group = np.arange(count)
    x0, y0, x1, y1 = (boxes[:, None, i] for i in range(4))
    touching = ((np.minimum(x1, x1.T) > np.maximum(x0, x0.T))
                & (np.minimum(y1, y1.T) > np.maximum(y0, y0.T)))
    changed = True
    while changed:  # label propagation: at most `count` rounds
        smallest = np.where(touching, group[None, :], count).min(axis=1)
        changed = bool((smallest < group).any())
        group = np.minimum(group, smallest)
    return group


def box_proposals(boxes: np.ndarray, areas: np.ndarray, scores: np.ndarray,
                  score_range: tuple[float, float], frame_size: tuple[int, int],
                  cfg: ProposalConfig) -> tuple[np.ndarray, np.ndarray]:
    """Components -> (float32 [K, 4] box prompts x0, y0, x1, y1 in frame pixels, float32 [K]
    confidences), most confident first.

    `boxes` [M, 4] are the components' tight boxes (x1, y1 exclusive), `areas` [M] their pixel
    counts, `scores` [M] their mean scores on the score's own scale.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    areas = np.asarray(areas, np.float64)
    scores = np.asarray(scores, np.float64)
    grown = _grow(boxes, cfg, frame_size)
    groups = _overlap_groups(grown) if cfg.merge_fragments else np.arange(len(boxes))
    ids = np.unique(groups)
    merged = np.stack([np.concatenate([boxes[groups == g, :2].min(0),
                                       boxes[groups == g, 2:].max(0)]) for g in ids])
    weight = np.array([areas[groups == g].sum() for g in ids])
    mean = np.array([(areas[groups == g] * scores[groups == g]).sum() for g in ids]) / weight
    low, high = score_range
    confidence = np.clip((mean - low) / max(high - low, 1e-12), MIN_CONFIDENCE, 1.0)
    order = np.lexsort((-weight, -confidence))[: cfg.max_boxes]
    return (_grow(merged[order], cfg, frame_size).astype(np.float32),
            confidence[order].astype(np.float32))
