"""The UEM segmentor: DINOv2 + FPN decoder (official `DINOv2FPN`) + a per-pixel head.

Module names mirror the official Lightning module, so checkpoint keys map one to one:
`backbone.dinov2.*`, `backbone.learnable_layers.*`, `segmentation_head.*`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.models.backbones.dinov2 import DinoVisionTransformer, ViTConfig
from ood_perception.models.uem.heads import MLP, build_head


class Upsample2x(nn.Module):
    """Bilinear x2 to size (int(2h), int(2w)), align_corners=False (official `Upsample`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (int(x.shape[-2] * 2), int(x.shape[-1] * 2))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _conv_bn_relu(dim: int) -> list[nn.Module]:
    return [nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True)]


class FPNDecoder(nn.Module):
    """4 ViT levels -> [B, out_dim, 4h, 4w] features (h, w = patch grid)."""

    def __init__(self, embed_dim: int, output_dim: int = 256, mlp_hidden: int = 512):
        super().__init__()
        c = embed_dim
        self.fpn1 = nn.Sequential(nn.GroupNorm(1, c), nn.ConvTranspose2d(c, c, 2, 2),
                                  nn.BatchNorm2d(c), nn.GELU(), nn.ConvTranspose2d(c, c, 2, 2))
        self.fpn2 = nn.Sequential(nn.GroupNorm(1, c), nn.ConvTranspose2d(c, c, 2, 2))
        self.fpn3 = nn.GroupNorm(1, c)
        self.fpn4 = nn.Sequential(nn.GroupNorm(1, c), nn.MaxPool2d(2, 2))
        self.dino_mlp = MLP(c, mlp_hidden, output_dim, num_layers=2)
        in_channels = (c, c, c + output_dim, c)
        self.lateral_convs = nn.ModuleList(nn.Conv2d(i, output_dim, 1) for i in in_channels)
        self.fpn_convs = nn.ModuleList(
            nn.Conv2d(output_dim, output_dim, 3, padding=1) for _ in in_channels)
        heads = [_conv_bn_relu(output_dim)]
        for ups in (1, 2, 3):
            heads.append([m for _ in range(ups) for m in _conv_bn_relu(output_dim)
                          + [Upsample2x()]])
        self.heads = nn.ModuleList(nn.Sequential(*h) for h in heads)

    def forward(self, tokens: torch.Tensor, levels: list[torch.Tensor],
                grid: tuple[int, int]) -> torch.Tensor:
        """tokens [B, N, C] (final), 4 levels [B, N, C] -> [B, out_dim, 4h, 4w]."""
        h, w = grid

        def to_map(t: torch.Tensor) -> torch.Tensor:
            return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)

        maps = [to_map(t) for t in levels]
        feats = [self.fpn1(maps[0]), self.fpn2(maps[1]), self.fpn3(maps[2]), self.fpn4(maps[3])]
        feats[2] = torch.cat((feats[2], to_map(self.dino_mlp(tokens))), dim=1)
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            up = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
            laterals[i - 1] = laterals[i - 1] + up
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals, strict=True)]
        output = self.heads[0](outs[0])
        for i in range(1, len(outs)):
            output = output + F.interpolate(self.heads[i](outs[i]), size=output.shape[2:],
                                            mode="bilinear", align_corners=True)
        return output


class SegmentorBackbone(nn.Module):
    """Official `DINOv2` wrapper: the ViT (`dinov2`) and the FPN (`learnable_layers`)."""

    def __init__(self, vit: ViTConfig, window: tuple[int, int], layers: tuple[int, ...],
                 fpn_dim: int, mlp_hidden: int):
        super().__init__()
        self.layers = layers
        self.dinov2 = DinoVisionTransformer(vit, window)
        self.learnable_layers = FPNDecoder(vit.embed_dim, fpn_dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 3, H, W] -> (features [B, fpn_dim, 4h, 4w], final tokens [B, N, C]); ONE pass."""
        tokens, levels = self.dinov2(x, self.layers)
        return self.learnable_layers(tokens, levels, self.dinov2.grid), tokens


class UEMSegmentor(nn.Module):
    """Closed-set segmentor: logits F [B, K, 4h, 4w] plus the final ViT tokens for UEM."""

    def __init__(self, vit: ViTConfig, window: tuple[int, int], layers: tuple[int, ...],
                 fpn_dim: int, mlp_hidden: int, head: str, num_classes: int,
                 num_components: int):
        super().__init__()
        self.backbone = SegmentorBackbone(vit, window, layers, fpn_dim, mlp_hidden)
        self.segmentation_head = build_head(head, fpn_dim, num_classes, num_components)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, tokens = self.backbone(x)
        return self.segmentation_head(feats), tokens
