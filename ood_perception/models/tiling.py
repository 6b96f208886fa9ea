"""Sliding-window (official UEM protocol) and single-window coverage of a fixed input size.

The windows of all frames go through the network in batches of `chunk` windows per frame (all
of them in ONE batch by default); per-window logits are upsampled to the window, summed into the
frame and divided by the per-pixel window count (the score is taken only after averaging, as in
`sliding_window_inference`). Chunks bound the memory of a graph: a ViT-B attention matrix over
one 518x1036 window is 361 MB in fp32, 16 GB for the 45 windows of a 1024x2048 frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch._higher_order_ops.scan import scan

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
    """Normalised frames [B, 3, H, W] -> (F, U) averaged over windows, at [H, W].

    `chunk`: windows per frame in one network call (None = all), a divisor of the window
    count. The result does not depend on it, the peak memory does: an exported graph runs the
    chunks in an ONNX `Scan` (the network once in the graph, its activations for one chunk at
    a time), eager PyTorch in a loop.
    """

    def __init__(self, network: nn.Module, size: tuple[int, int], window: tuple[int, int],
                 stride: int, chunk: int | None = None):
        super().__init__()
        self.network = network
        self.size = tuple(size)
        self.window = tuple(window)
        self.windows = enumerate_windows(self.size, self.window, stride)
        count = len(self.windows)
        if chunk is not None and (chunk <= 0 or count % chunk):
            divisors = [d for d in range(1, count + 1) if count % d == 0]
            raise ConfigurationError(
                f"window chunk must divide the {count} windows of a {size[0]}x{size[1]} input: "
                f"one of {', '.join(map(str, divisors))}; got {chunk}")
        self.chunk = chunk or count
        coverage = torch.zeros(self.size)
        for top, left in self.windows:
            coverage[top:top + window[0], left:left + window[1]] += 1
        self.register_buffer("inv_count", 1.0 / coverage, persistent=False)

    @property
    def uses_scan(self) -> bool:
        """Whether an export runs the network in an ONNX `Scan` (several chunks)."""
        return self.chunk < len(self.windows)

    def _run_network(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[n, B, 3, h, w] window-major crops -> (F [n, B, K, h', w'], U [n, B, 2, h'', w''])."""
        count, batch = crops.shape[:2]
        chunks = crops.reshape(count // self.chunk, self.chunk * batch, *crops.shape[2:])
        if self.chunk == count:
            seg, uem = self.network(chunks[0])
        elif torch.compiler.is_exporting():
            _, (seg, uem) = scan(self._scan_step, chunks.new_zeros(1), chunks)
        else:
            outputs = [self.network(chunk) for chunk in chunks]
            seg = torch.stack([out[0] for out in outputs])
            uem = torch.stack([out[1] for out in outputs])
        return (seg.reshape(count, batch, *seg.shape[-3:]),
                uem.reshape(count, batch, *uem.shape[-3:]))

    def _scan_step(self, carry: torch.Tensor, chunk: torch.Tensor):
        return carry.clone(), self.network(chunk)

    def _merge(self, per_window: torch.Tensor) -> torch.Tensor:
        """[n, B, C, h, w] logits -> upsampled to the window, summed in place, averaged:
        [B, C, H, W].

        One chunk of windows is upsampled at a time (the same sums in the same order)."""
        total = per_window.new_zeros(*per_window.shape[1:3], *self.size)
        for first in range(0, len(self.windows), self.chunk):
            part = per_window[first:first + self.chunk]
            up = F.interpolate(part.flatten(0, 1), size=self.window, mode="bilinear",
                               align_corners=False).unflatten(0, part.shape[:2])
            for index, (top, left) in enumerate(self.windows[first:first + self.chunk]):
                total = self._add_window(total, up[index], top, left)
        return total * self.inv_count

    def _add_window(self, total: torch.Tensor, window: torch.Tensor, top: int,
                    left: int) -> torch.Tensor:
        """`total` [B, C, H, W] with `window` [B, C, h, w] added at (top, left).

        Built from slices of `total`, so every sum depends on the previous one: a graph
        runtime cannot compute the windows' frame-size copies ahead of the sums and hold them
        all (a zero-padded copy per window took ONNX Runtime past 8 GB at 1024x2048)."""
        (wh, ww), (height, width) = self.window, self.size
        rows = total[:, :, top:top + wh]
        band = ([rows[..., :left]] if left else []) + [rows[..., left:left + ww] + window]
        band = torch.cat(band + ([rows[..., left + ww:]] if left + ww < width else []), dim=-1)
        frame = ([total[:, :, :top]] if top else []) + [band]
        return torch.cat(frame + ([total[:, :, top + wh:]] if top + wh < height else []), dim=-2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wh, ww = self.window
        crops = torch.stack([x[:, :, top:top + wh, left:left + ww]
                             for top, left in self.windows])
        seg, uem = self._run_network(crops)
        return self._merge(seg), self._merge(uem)


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
