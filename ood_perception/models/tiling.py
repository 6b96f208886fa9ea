"""Sliding-window (official UEM protocol) and single-window coverage of a fixed input size.

All windows of all frames go through the network as ONE batch; per-window logits are
upsampled to the window, summed into the frame and divided by the per-pixel window count
(the score is taken only after averaging, as in `sliding_window_inference`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.errors import ConfigurationError


def official_starts(length: int, window: int, stride: int) -> list[int]:
    """Window starts of the official code; misses the end when (length - window) % stride == 0."""
    starts = list(range(0, length - window, stride))
    if (length - window) % stride != 0:
        starts.append(length - window)
    return starts


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Corrected starts: always ends at `length - window`; equal to the official ones
    whenever those cover the frame."""
    if window > length:
        raise ConfigurationError(f"window {window} is larger than the input side {length}")
    if stride <= 0:
        raise ConfigurationError(f"stride must be positive, got {stride}")
    return list(range(0, length - window, stride)) + [length - window]


def covers_like_official(size: tuple[int, int], window: tuple[int, int], stride: int) -> bool:
    """Whether the official enumeration covers `size`, so the corrected one equals it."""
    return all(official_starts(side, win, stride) == window_starts(side, win, stride)
               for side, win in zip(size, window, strict=True))


def enumerate_windows(size: tuple[int, int], window: tuple[int, int],
                      stride: int) -> list[tuple[int, int]]:
    """(top, left) of each window, row-major."""
    rows = window_starts(size[0], window[0], stride)
    cols = window_starts(size[1], window[1], stride)
    return [(top, left) for top in rows for left in cols]


class SlidingWindow(nn.Module):
    """Normalised frames [B, 3, H, W] -> (F, U) averaged over windows, at [H, W]."""

    def __init__(self, network: nn.Module, size: tuple[int, int], window: tuple[int, int],
                 stride: int):
        super().__init__()
        self.network = network
        self.size = tuple(size)
        self.window = tuple(window)
        self.windows = enumerate_windows(self.size, self.window, stride)
        count = torch.zeros(self.size)
        for top, left in self.windows:
            count[top:top + window[0], left:left + window[1]] += 1
        self.register_buffer("inv_count", 1.0 / count, persistent=False)

    def _merge(self, per_window: torch.Tensor, batch: int) -> torch.Tensor:
        """[B * n, C, h, w] -> window-averaged [B, C, H, W]."""
        wh, ww = self.window
        height, width = self.size
        up = F.interpolate(per_window, size=self.window, mode="bilinear", align_corners=False)
        up = up.reshape(batch, len(self.windows), up.shape[1], wh, ww)
        total = None
        for index, (top, left) in enumerate(self.windows):
            pad = (left, width - left - ww, top, height - top - wh)
            part = F.pad(up[:, index], pad)
            total = part if total is None else total + part
        return total * self.inv_count

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wh, ww = self.window
        crops = torch.stack([x[:, :, top:top + wh, left:left + ww]
                             for top, left in self.windows], dim=1)
        batch = x.shape[0]
        seg, uem = self.network(crops.reshape(-1, x.shape[1], wh, ww))
        return self._merge(seg, batch), self._merge(uem, batch)


class SingleWindow(nn.Module):
    """Resize the whole frame to the window, run once, upsample F and U back to [H, W].

    This product's fast mode, not an official protocol (the official code slides windows
    over the native frame)."""

    def __init__(self, network: nn.Module, size: tuple[int, int], window: tuple[int, int]):
        super().__init__()
        self.network = network
        self.size = tuple(size)
        self.window = tuple(window)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.size != self.window:
            x = F.interpolate(x, size=self.window, mode="bilinear", align_corners=False)
        seg, uem = self.network(x)
        seg = F.interpolate(seg, size=self.size, mode="bilinear", align_corners=False)
        uem = F.interpolate(uem, size=self.size, mode="bilinear", align_corners=False)
        return seg, uem


class ScoredNetwork(nn.Module):
    """Coverage (sliding or single window) + score head: the DeployModel `network`."""

    def __init__(self, coverage: nn.Module, score: nn.Module):
        super().__init__()
        self.coverage = coverage
        self.score = score

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seg, uem = self.coverage(x)
        return self.score(seg, uem)
