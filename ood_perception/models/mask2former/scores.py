"""Anomaly scores of mask-classification models, as the official evaluators compute them.

Inputs: class probabilities P [B, Q, C] (softmax over every output, no-object last) and mask
probabilities M [B, Q, H, W] (sigmoid of the upsampled mask logits); K known classes.
Higher = more anomalous. `semantic_map` is MaskFormer's `semantic_inference` cut to the K known
classes (`sem_seg`), whose argmax is the semantic output.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ood_perception.errors import ConfigurationError


def semantic_map(probs: torch.Tensor, masks: torch.Tensor, known: int) -> torch.Tensor:
    """sem_seg [B, K, H, W] = sum_q P_q[k] M_q for the known classes."""
    return torch.einsum("bqk,bqhw->bkhw", probs[..., :known], masks)


def _weighted(per_query: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """sum_q w_q M_q: [B, Q] x [B, Q, H, W] -> [B, H, W]."""
    return torch.einsum("bq,bqhw->bhw", per_query, masks)


def uno(probs: torch.Tensor, masks: torch.Tensor, known: int) -> torch.Tensor:
    """UNO (Delić et al., Outlier detection by ensembling uncertainty with negative
    objectness): sum_q M_q (P_q[K] - max_{k<K} P_q[k]); needs the negative class K."""
    return _weighted(probs[..., known] - probs[..., :known].amax(-1), masks)


def eam(probs: torch.Tensor, masks: torch.Tensor, known: int) -> torch.Tensor:
    """EAM (Grcić et al., On Advantages of Mask-level Recognition for Outlier-aware
    Segmentation; Open-set-M2F's DenseOODDetectionEvaluator): 1 - sum_q M_q max(P_q[:-1]).

    The max runs over every output but no-object, so on a K+2 model it includes the negative
    class K, exactly as the official evaluator does.
    """
    return 1.0 - _weighted(probs[..., :-1].amax(-1), masks)


def rba(probs: torch.Tensor, masks: torch.Tensor, known: int) -> torch.Tensor:
    """RbA: -sum_k tanh(sem_seg_k) over the known classes."""
    return -torch.tanh(semantic_map(probs, masks, known)).sum(1)


def max_softmax(probs: torch.Tensor, masks: torch.Tensor, known: int) -> torch.Tensor:
    """-max_k sem_seg_k: the AEM baseline of the EAM paper (eq. 6), the mask-level
    counterpart of max-softmax rather than a per-pixel softmax."""
    return -semantic_map(probs, masks, known).amax(1)


M2F_SCORES: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "uno": uno, "eam": eam, "rba": rba, "max_softmax": max_softmax,
}
# Typical ranges (colour maps, threshold hints); sums over overlapping masks can leave them.
SCORE_RANGES: dict[str, tuple[float, float]] = {
    "uno": (-1.0, 1.0), "eam": (0.0, 1.0), "rba": (-1.0, 0.0), "max_softmax": (-1.0, 0.0),
}


def check_score(name: str, outputs: int, known: int) -> None:
    """A score must exist and fit the class head (UNO needs the negative class at index K)."""
    if name not in M2F_SCORES:
        raise ConfigurationError(f"unknown Mask2Former score {name!r}; known: "
                                 f"{', '.join(sorted(M2F_SCORES))}")
    if name == "uno" and outputs != known + 2:
        raise ConfigurationError(
            f"score 'uno' needs a K+2 class head (K={known} known, negative, no-object); this "
            f"model has {outputs} outputs; use eam, rba or max_softmax")
