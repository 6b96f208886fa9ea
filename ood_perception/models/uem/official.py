"""The official UEM inference protocol, kept as the speed and accuracy reference.

`sliding_window_inference` of NazirNayal8/UEM-likelihood-ratio: windows one after another
in the official enumeration, and per window the backbone runs twice (`forward_features` for
the UEM tokens, `get_intermediate_layers` for the segmentor); logits are upsampled to the
window, averaged over windows, and only then scored. The product (`tiling.SlidingWindow`)
gives the same scores from one backbone pass per window with all windows in one batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.errors import ConfigurationError
from ood_perception.models.deploy import DeployModel
from ood_perception.models.tiling import ScoredNetwork, SlidingWindow, official_starts
from ood_perception.models.uem.network import UEMNetwork


def official_window(network: UEMNetwork, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One window the official way: (F [B, K, 4h, 4w], U [B, 2, h, w]) from two passes."""
    backbone = network.segmentor.backbone
    vit = backbone.dinov2
    final, _ = vit(x)
    _, levels = vit(x, layers=backbone.layers)
    seg = network.segmentor.segmentation_head(backbone.learnable_layers(final, levels, vit.grid))
    proj = network.ood_projector(final)
    proj = proj.transpose(1, 2).reshape(proj.shape[0], proj.shape[2], *vit.grid)
    return seg, network.ood_head(proj)


class OfficialSlidingWindow(nn.Module):
    """Normalised frames [B, 3, H, W] -> (F, U) averaged over windows at [H, W], sequentially."""

    def __init__(self, network: UEMNetwork, size: tuple[int, int], window: tuple[int, int],
                 stride: int):
        super().__init__()
        self.network = network
        self.size = tuple(size)
        self.window = tuple(window)
        self.rows = official_starts(size[0], window[0], stride)
        self.cols = official_starts(size[1], window[1], stride)
        ends = (self.rows[-1] + window[0] if self.rows else 0,
                self.cols[-1] + window[1] if self.cols else 0)
        if ends != self.size:
            raise ConfigurationError(
                f"the official window enumeration ({window[0]}x{window[1]}, stride {stride}) "
                f"leaves the bottom or right of a {size[0]}x{size[1]} input uncovered (it "
                "drops the last window when (side - window) % stride == 0); pick another "
                "input size or stride")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wh, ww = self.window
        seg_sum = uem_sum = None
        count = x.new_zeros(1, 1, *self.size)
        for top in self.rows:
            for left in self.cols:
                seg, uem = official_window(self.network, x[:, :, top:top + wh, left:left + ww])
                seg = F.interpolate(seg, size=self.window, mode="bilinear", align_corners=False)
                uem = F.interpolate(uem, size=self.window, mode="bilinear", align_corners=False)
                if seg_sum is None:
                    seg_sum = x.new_zeros(x.shape[0], seg.shape[1], *self.size)
                    uem_sum = x.new_zeros(x.shape[0], uem.shape[1], *self.size)
                seg_sum[:, :, top:top + wh, left:left + ww] += seg
                uem_sum[:, :, top:top + wh, left:left + ww] += uem
                count[:, :, top:top + wh, left:left + ww] += 1
        return seg_sum / count, uem_sum / count


def official_protocol(deploy: DeployModel) -> DeployModel:
    """The same weights and score as a sliding-window UEM DeployModel, run the official way."""
    scored = deploy.network
    coverage = getattr(scored, "coverage", None)
    if not isinstance(coverage, SlidingWindow) or "stride" not in deploy.info.tiling:
        raise ConfigurationError(
            "the official protocol applies to sliding-window UEM models; export without "
            "--single-window")
    official = OfficialSlidingWindow(coverage.network, coverage.size, coverage.window,
                                     int(deploy.info.tiling["stride"]))
    return DeployModel(ScoredNetwork(official, scored.score), deploy.info).eval()
