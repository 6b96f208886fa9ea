"""Anomaly scores on full-resolution logits (higher = more anomalous).

F: segmentor logits [B, K, H, W]; U: UEM logits [B, 2, H, W] (channel 1 = outlier).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ood_perception.errors import ConfigurationError


def llr(seg: torch.Tensor, uem: torch.Tensor) -> torch.Tensor:
    """UEM eq. 11: log p_out - log p_in = U_1 - U_0 - max_k F_k."""
    return uem[:, 1] - uem[:, 0] - seg.amax(dim=1)


def max_softmax(seg: torch.Tensor, uem: torch.Tensor) -> torch.Tensor:
    """Negative maximum softmax probability."""
    return -torch.softmax(seg, dim=1).amax(dim=1)


def max_logit(seg: torch.Tensor, uem: torch.Tensor) -> torch.Tensor:
    """Negative maximum logit."""
    return -seg.amax(dim=1)


def energy(seg: torch.Tensor, uem: torch.Tensor) -> torch.Tensor:
    """Free energy E = -logsumexp_k F_k (temperature 1): high where no class fits."""
    return -torch.logsumexp(seg, dim=1)


def uem_out(seg: torch.Tensor, uem: torch.Tensor) -> torch.Tensor:
    """The UEM outlier logit alone (ablation)."""
    return uem[:, 1]


SCORES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "llr": llr, "max_softmax": max_softmax, "max_logit": max_logit, "energy": energy,
    "uem_out": uem_out,
}


class ScoreHead(nn.Module):
    """(F, U) -> (score float32 [B, H, W], classes int64 [B, H, W] = argmax_k F_k)."""

    def __init__(self, name: str):
        super().__init__()
        if name not in SCORES:
            raise ConfigurationError(f"unknown score {name!r}; known: {sorted(SCORES)}")
        self.name = name
        self.fn = SCORES[name]

    def forward(self, seg: torch.Tensor, uem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fn(seg, uem).float(), seg.argmax(dim=1)
