"""DOoD's denoiser `UNet0D`: a U-Net of residual MLP blocks on single feature vectors.

Parameter names of lmb-freiburg/diffusion-for-ood `diffusion/denoisers/unet_0d.py`:
`time_embed`, `input_blocks.i.0`, `middle_blocks.i.0`, `output_blocks.i.0` (one-block
`TimestepEmbedSequential`s there, one-entry ModuleLists here) and `out`. Each block is a
`ResBlock`: `in_layers` GroupNorm(32)-SiLU-Linear, plus `emb_layers` (SiLU-Linear) of the
time embedding, `out_layers` GroupNorm-SiLU-Dropout-Linear, `skip_connection`. Output
blocks take their input concatenated with the matching input block's output (2C channels).
Features may carry any leading dimensions ([..., C]) and the time steps broadcast against
them, so the score runs every time step as one batch with one embedding per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.errors import ConfigurationError

TIME_EMBEDDINGS = ("periodic", "scalar")


@dataclass(frozen=True)
class UNet0DConfig:
    """The official `get_diffusion_model` settings that shape the weights."""

    in_channels: int = 768
    model_channels: int = 768
    # Input blocks (= output blocks): len(channel_mult), all multipliers 1 in the releases.
    levels: int = 6
    middle_blocks: int = 3
    # "periodic": sinusoidal embedding + 2-layer MLP; "scalar": t itself + one Linear.
    time_embedding: str = "periodic"
    # Each block maps the embedding with its own `emb_layers` ("embed"); without them
    # ("identity") the embedding is added as it is (the SETR ADE20k release).
    block_time_layers: bool = True

    def __post_init__(self) -> None:
        if self.time_embedding not in TIME_EMBEDDINGS:
            raise ConfigurationError(f"time embedding must be one of {TIME_EMBEDDINGS}, got "
                                     f"{self.time_embedding!r}")
        for name in ("in_channels", "model_channels"):
            if getattr(self, name) % 32:
                raise ConfigurationError(f"{name} must be a multiple of 32 (GroupNorm(32)), "
                                         f"got {getattr(self, name)}")
        if self.levels < 1 or self.middle_blocks < 0:
            raise ConfigurationError(f"need levels >= 1 and middle blocks >= 0, got "
                                     f"{self.levels} and {self.middle_blocks}")


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [..., dim] of time steps [...]: cosines first, then sines."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32,
                                                           device=t.device) / half)
    args = t.unsqueeze(-1).float() * freqs
    embedding = torch.cat((torch.cos(args), torch.sin(args)), dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


def scalar_timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The time step itself repeated over `dim` channels [..., dim]."""
    return t.unsqueeze(-1).float().expand(*t.shape, dim)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32, C) over the channels of features [..., C] (leading dims flattened)."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class ResBlock(nn.Module):
    """x [..., C_in], emb [..., E] -> skip(x) + out_layers(in_layers(x) + emb_layers(emb))."""

    def __init__(self, channels: int, emb_channels: int | None, out_channels: int):
        super().__init__()
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(),
                                       nn.Linear(channels, out_channels))
        self.emb_layers = (nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
                           if emb_channels is not None else nn.Identity())
        self.out_layers = nn.Sequential(GroupNorm32(out_channels), nn.SiLU(), nn.Identity(),
                                        nn.Linear(out_channels, out_channels))
        self.skip_connection = (nn.Identity() if out_channels == channels
                                else nn.Linear(channels, out_channels))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x) + self.emb_layers(emb)
        return self.skip_connection(x) + self.out_layers(h)


class UNet0D(nn.Module):
    """(features [..., C], time steps broadcastable to [...]) -> predicted noise [..., C]."""

    def __init__(self, cfg: UNet0DConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.model_channels
        if cfg.time_embedding == "periodic":
            self.time_embed = nn.Sequential(nn.Linear(ch, ch), nn.SiLU(), nn.Linear(ch, ch))
        else:
            self.time_embed = nn.Sequential(nn.Linear(ch, ch))
        emb = ch if cfg.block_time_layers else None
        widths = [cfg.in_channels] + [ch] * cfg.levels
        self.input_blocks = nn.ModuleList(
            nn.ModuleList([ResBlock(widths[i], emb, ch)]) for i in range(cfg.levels))
        self.middle_blocks = nn.ModuleList(
            nn.ModuleList([ResBlock(ch, emb, ch)]) for _ in range(cfg.middle_blocks))
        self.output_blocks = nn.ModuleList(
            nn.ModuleList([ResBlock(2 * ch, emb, ch)]) for _ in range(cfg.levels))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Linear(ch, cfg.in_channels))
        self.zero_last_layers()

    def zero_last_layers(self) -> None:
        """The official init: the last Linear of every block and of `out` start at zero."""
        blocks = [*self.input_blocks, *self.middle_blocks, *self.output_blocks]
        for layer in [block[0].out_layers[3] for block in blocks] + [self.out[2]]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        embed = (timestep_embedding if self.cfg.time_embedding == "periodic"
                 else scalar_timestep_embedding)
        emb = self.time_embed(embed(t, self.cfg.model_channels).to(x.dtype))
        skips = []
        h = x
        for block in self.input_blocks:
            h = block[0](h, emb)
            skips.append(h)
        for block in self.middle_blocks:
            h = block[0](h, emb)
        for block in self.output_blocks:
            h = block[0](torch.cat((h, skips.pop()), dim=-1), emb)
        return self.out(h)
