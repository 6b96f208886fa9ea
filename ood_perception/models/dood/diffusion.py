"""DOoD's diffusion model and its per-feature score (Galesso et al., ECCV 2024, section 5.3).

`DiffusionModel` holds what the official `*_diff.pth` holds: `normalization` and
`denoiser`. `DiffusionScore` perturbs each normalised feature x0 to
x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps for t = 0 .. T-1 and sums the negative cosine
between the predicted and the true noise: -cos(eps_theta(x_t, t), eps). That is the
official code's score (`calc_eps_cosine_loop`): an unweighted sum. The paper's eq. 8
weights each step by sqrt(1 - abar_t); `weighting="eq8"` does that.

The official code draws fresh noise at every call, so its scores vary from run to run. Here
the noise is a fixed bank drawn once from a seeded generator and stored with the weights:
the graph is deterministic (the same frame always gets the same score, on every backend)
and exports to ONNX. Feature i uses bank vector i mod `noise_vectors` at every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ood_perception.errors import ConfigurationError
from ood_perception.models.dood.normalization import FeatureNormalization
from ood_perception.models.dood.schedule import DDPMSchedule
from ood_perception.models.dood.unet0d import UNet0D, UNet0DConfig

WEIGHTINGS = ("official", "eq8")
# The official evaluation aggregates the first 25 steps (`--num_diffusion_steps 25`).
DEFAULT_TIMESTEPS = 25


class DiffusionModel(nn.Module):
    """Raw features [..., C] -> normalised by `normalization`, denoised by `denoiser`."""

    def __init__(self, cfg: UNet0DConfig):
        super().__init__()
        self.normalization = FeatureNormalization(cfg.in_channels)
        self.denoiser = UNet0D(cfg)


@dataclass(frozen=True)
class DiffusionScoreConfig:
    """Which steps are aggregated, how, and the noise they use."""

    # Steps t = 0 .. timesteps-1 (the paper's 1 .. T); fewer is faster (paper: 5 to 25).
    timesteps: int = DEFAULT_TIMESTEPS
    # "official": the released code's plain sum; "eq8": the paper's sqrt(1 - abar_t) weights.
    weighting: str = "official"
    noise_seed: int = 0
    # Noise vectors per step in the bank.
    noise_vectors: int = 64

    def __post_init__(self) -> None:
        steps = DDPMSchedule.linear().num_steps
        if not 1 <= self.timesteps <= steps:
            raise ConfigurationError(f"timesteps must be in 1..{steps}, got {self.timesteps}")
        if self.weighting not in WEIGHTINGS:
            raise ConfigurationError(f"timestep weighting must be one of {WEIGHTINGS}, got "
                                     f"{self.weighting!r}")
        if self.noise_vectors < 1:
            raise ConfigurationError(f"noise vectors must be >= 1, got {self.noise_vectors}")

    def as_dict(self) -> dict:
        return {"timesteps": self.timesteps, "weighting": self.weighting,
                "noise_seed": self.noise_seed, "noise_vectors": self.noise_vectors}


class DiffusionScore(nn.Module):
    """(diffusion model, raw features [B, N, C]) -> E [B, N], higher = more anomalous."""

    def __init__(self, cfg: DiffusionScoreConfig, channels: int):
        super().__init__()
        self.cfg = cfg
        schedule = DDPMSchedule.linear()
        steps = torch.arange(cfg.timesteps)
        generator = torch.Generator().manual_seed(cfg.noise_seed)
        self.register_buffer("noise", torch.randn(cfg.timesteps, cfg.noise_vectors, channels,
                                                  generator=generator))
        self.register_buffer("steps", steps.view(-1, 1, 1), persistent=False)
        self.register_buffer("signal_coef", schedule.sqrt_alphas_cumprod[steps].view(-1, 1, 1, 1),
                             persistent=False)
        noise_coef = schedule.sqrt_one_minus_alphas_cumprod[steps]
        self.register_buffer("noise_coef", noise_coef.view(-1, 1, 1, 1), persistent=False)
        weights = noise_coef if cfg.weighting == "eq8" else torch.ones(cfg.timesteps)
        self.register_buffer("weights", weights.view(-1, 1, 1), persistent=False)

    def noise_for(self, count: int) -> torch.Tensor:
        """The bank spread over `count` features: [T, count, C], feature i gets vector i mod P."""
        index = torch.arange(count, device=self.noise.device) % self.noise.shape[1]
        return self.noise[:, index]

    def per_step(self, model: DiffusionModel, features: torch.Tensor) -> torch.Tensor:
        """Raw features [B, N, C] -> -cos(eps_theta, eps) per step [T, B, N]."""
        x0 = model.normalization(features)
        noise = self.noise_for(x0.shape[1]).unsqueeze(1)
        x_t = self.signal_coef * x0.unsqueeze(0) + self.noise_coef * noise
        predicted = model.denoiser(x_t, self.steps)
        dot = (noise * -predicted).sum(-1)
        return dot / (noise.norm(dim=-1) * predicted.norm(dim=-1))

    def forward(self, model: DiffusionModel, features: torch.Tensor) -> torch.Tensor:
        return (self.weights * self.per_step(model, features)).sum(0)
