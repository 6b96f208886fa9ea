"""DOoD's compound score and the in-distribution statistics that standardise it.

Galesso et al. (ECCV 2024), section 5.3.3, as the official evaluation computes it: the
segmentor's uncertainty S = 1 - logsumexp_k(logits_k) on full-resolution logits and the
diffusion score E, each standardised with a mean and standard deviation measured on
in-distribution images (the official code takes 25 training images; none ship in its
checkpoints), then summed:
(S - mu_S) / sigma_S + (E - mu_E) / sigma_E.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ood_perception.errors import ConfigurationError

SCORES = ("compound", "diffusion", "logsumexp")
STATS_FORMAT = "ood_perception.dood_stats/1"


@dataclass(frozen=True)
class DOoDStatistics:
    """Means and standard deviations of S and E on in-distribution images, and what they fit.

    They hold for one diffusion score: its time steps and weighting (the sum over T steps
    scales with T).
    """

    logsumexp_mean: float
    logsumexp_std: float
    diffusion_mean: float
    diffusion_std: float
    timesteps: int
    weighting: str
    images: int

    def __post_init__(self) -> None:
        values = (self.logsumexp_mean, self.logsumexp_std, self.diffusion_mean,
                  self.diffusion_std)
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            raise ConfigurationError(f"DOoD statistics must be finite numbers, got {values}")
        if self.logsumexp_std <= 0 or self.diffusion_std <= 0:
            raise ConfigurationError("DOoD statistics need positive standard deviations; were "
                                     "they measured on more than one image?")

    def to_dict(self) -> dict:
        return {"format": STATS_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, payload: dict, source: str = "DOoD statistics") -> DOoDStatistics:
        if not isinstance(payload, dict) or payload.get("format") != STATS_FORMAT:
            raise ConfigurationError(f"{source} is not an {STATS_FORMAT} file (write one with "
                                     "`ood-perception dood-stats`)")
        fields = {k: v for k, v in payload.items() if k != "format"}
        try:
            return cls(**fields)
        except TypeError as error:
            raise ConfigurationError(f"{source}: {error}") from None

    def check_fits(self, timesteps: int, weighting: str) -> None:
        """Refuse statistics measured for another diffusion score."""
        if (self.timesteps, self.weighting) != (timesteps, weighting):
            raise ConfigurationError(
                f"the DOoD statistics were measured with {self.timesteps} time steps and "
                f"{self.weighting} weighting, the model uses {timesteps} and {weighting}; "
                "measure them again with `ood-perception dood-stats` for this setting")


def read_statistics(path: str | Path) -> DOoDStatistics:
    """A `dood-stats` JSON file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"DOoD statistics file not found: {path}")
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot read DOoD statistics {path}: {error}") from None
    return DOoDStatistics.from_dict(payload, str(path))


def write_statistics(stats: DOoDStatistics, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stats.to_dict(), indent=1) + "\n")
    return path


def logsumexp_score(seg: torch.Tensor) -> torch.Tensor:
    """S = 1 - logsumexp over classes: logits [B, K, H, W] -> [B, H, W]."""
    return 1.0 - torch.logsumexp(seg, dim=1)


class StatisticsAccumulator:
    """Streams S over every pixel and E over valid pixels into means and (unbiased) stds."""

    def __init__(self) -> None:
        self.sums = torch.zeros(2, 3, dtype=torch.float64)  # rows S, E; count, sum, sum^2

    def update(self, seg: torch.Tensor, diffusion: torch.Tensor,
               valid: torch.Tensor | None = None) -> None:
        """seg [B, K, H, W], diffusion [B, H, W]; valid [B, H, W] bool (None: all)."""
        s = logsumexp_score(seg).double().flatten()
        e = diffusion.double().flatten() if valid is None else diffusion.double()[valid]
        for row, values in enumerate((s, e)):
            self.sums[row, 0] += values.numel()
            self.sums[row, 1] += values.sum()
            self.sums[row, 2] += (values * values).sum()

    def result(self, timesteps: int, weighting: str, images: int) -> DOoDStatistics:
        count, total, squares = self.sums.unbind(1)
        if (count < 2).any():
            raise ConfigurationError("too few in-distribution pixels for DOoD statistics")
        mean = total / count
        std = ((squares - count * mean * mean) / (count - 1)).clamp_min(0).sqrt()
        return DOoDStatistics(float(mean[0]), float(std[0]), float(mean[1]), float(std[1]),
                              timesteps, weighting, images)


class DOoDScoreHead(nn.Module):
    """(logits [B, K, H, W], E [B, 1, H, W]) -> (score float32 [B, H, W], classes [B, H, W]).

    "compound" (default), or one part alone: "diffusion" (E), "logsumexp" (S).
    """

    def __init__(self, name: str, stats: DOoDStatistics | None):
        super().__init__()
        if name not in SCORES:
            raise ConfigurationError(f"unknown DOoD score {name!r}; known: {', '.join(SCORES)}")
        self.name = name
        values = (0.0, 1.0, 0.0, 1.0) if stats is None else (
            stats.logsumexp_mean, stats.logsumexp_std, stats.diffusion_mean, stats.diffusion_std)
        self.register_buffer("standardisation", torch.tensor(values, dtype=torch.float32))

    def forward(self, seg: torch.Tensor, diffusion: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        classes = seg.argmax(dim=1)
        if self.name == "diffusion":
            return diffusion[:, 0].float(), classes
        s = logsumexp_score(seg)
        if self.name == "logsumexp":
            return s.float(), classes
        s_mean, s_std, e_mean, e_std = self.standardisation.unbind(0)
        score = (s - s_mean) / s_std + (diffusion[:, 0] - e_mean) / e_std
        return score.float(), classes
