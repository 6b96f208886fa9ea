"""The DDPM forward process DOoD trains and scores with (linear betas, 1000 steps).

As lmb-freiburg/diffusion-for-ood `gaussian_diffusion.py`: betas linear in float64 from
1e-4 to 0.02, their cumulative product cast to float32, square roots taken in float32.
Step index t = 0 means one diffusion step (the paper's t = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NUM_STEPS = 1000
BETA_START = 1e-4
BETA_END = 0.02


@dataclass(frozen=True)
class DDPMSchedule:
    """sqrt(abar_t) and sqrt(1 - abar_t) [NUM_STEPS] float32, indexed by t = 0 .. 999."""

    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor

    @classmethod
    def linear(cls, steps: int = NUM_STEPS, start: float = BETA_START,
               end: float = BETA_END) -> DDPMSchedule:
        betas = np.linspace(start, end, steps, dtype=np.float64)
        alphas_cumprod = torch.from_numpy(np.cumprod(1.0 - betas)).float()
        return cls(torch.sqrt(alphas_cumprod), torch.sqrt(1.0 - alphas_cumprod))

    @property
    def num_steps(self) -> int:
        return self.sqrt_alphas_cumprod.shape[0]

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise; t [...] indexes rows of x0 [..., C]."""
        a = self.sqrt_alphas_cumprod.to(x0.device)[t].unsqueeze(-1)
        s = self.sqrt_one_minus_alphas_cumprod.to(x0.device)[t].unsqueeze(-1)
        return a * x0 + s * noise
