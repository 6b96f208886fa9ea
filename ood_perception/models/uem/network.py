"""UEM (Nayal et al., likelihood-ratio OoD segmentation) over the DINOv2 segmentor.

`UEMNetwork` maps a batch of normalised windows to the segmentor logits F (at 4x the patch
grid) and the UEM logits U (at the patch grid), from ONE backbone pass per window.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ood_perception.errors import ConfigurationError
from ood_perception.models.backbones.dinov2 import VIT_PRESETS, ViTConfig
from ood_perception.models.uem.heads import MLP, build_head
from ood_perception.models.uem.segmentor import UEMSegmentor

# Segmentor head / UEM head per official variant (configs/segmentation/ood/{d_d,g_d,g_g}).
VARIANTS = {"dd": ("linear", "linear"), "gd": ("gmm", "linear"), "gg": ("gmm", "gmm")}


@dataclass(frozen=True)
class UEMConfig:
    """Every size of the model; `uem_config(size, variant)` gives the official ones."""

    vit: ViTConfig = field(default_factory=ViTConfig)
    # Blocks whose normed outputs feed fpn1..fpn4 (official [1, 4, 8, 11] for ViT-B).
    layers: tuple[int, ...] = (1, 4, 8, 11)
    fpn_dim: int = 256
    dino_mlp_hidden: int = 512
    num_classes: int = 19
    segmentor_head: str = "linear"
    # ood_projector = MLP(embed_dim, projector_hidden, projector_dim, projector_layers).
    projector_hidden: int = 512
    projector_dim: int = 256
    projector_layers: int = 3
    uem_head: str = "linear"
    gmm_components: int = 5

    def __post_init__(self) -> None:
        for name in ("segmentor_head", "uem_head"):
            if getattr(self, name) not in ("linear", "gmm"):
                raise ConfigurationError(f"{name} must be 'linear' or 'gmm', got "
                                         f"{getattr(self, name)!r}")
        if len(self.layers) != 4 or not all(0 <= i < self.vit.depth for i in self.layers):
            raise ConfigurationError(
                f"layers must be 4 block indices below depth {self.vit.depth}, got {self.layers}")

    @property
    def variant(self) -> str:
        heads = (self.segmentor_head, self.uem_head)
        return next(name for name, pair in VARIANTS.items() if pair == heads)


def uem_config(size: str = "b", variant: str = "dd", **overrides) -> UEMConfig:
    """Official configuration for ViT size s/b/l (registers) and variant dd/gd/gg."""
    if size not in VIT_PRESETS:
        raise ConfigurationError(f"unknown ViT size {size!r}; known: {sorted(VIT_PRESETS)}")
    if variant not in VARIANTS:
        raise ConfigurationError(f"unknown UEM variant {variant!r}; known: {sorted(VARIANTS)}")
    vit = VIT_PRESETS[size]
    depth = vit.depth
    # ViT-B uses [1, 4, 8, 11]; other depths take the same relative positions.
    layers = (1, 4, 8, 11) if depth == 12 else tuple(round(i * (depth - 1) / 11)
                                                     for i in (1, 4, 8, 11))
    seg_head, uem_head = VARIANTS[variant]
    cfg = UEMConfig(vit=vit, layers=layers, segmentor_head=seg_head, uem_head=uem_head)
    return replace(cfg, **overrides) if overrides else cfg


class UEMNetwork(nn.Module):
    """Normalised windows [B, 3, H, W] -> (F [B, K, 4h, 4w], U [B, 2, h, w])."""

    def __init__(self, cfg: UEMConfig, window: tuple[int, int]):
        super().__init__()
        patch = cfg.vit.patch_size
        if window[0] % patch or window[1] % patch:
            raise ConfigurationError(f"window {window} must be a multiple of the patch size "
                                     f"{patch}")
        self.cfg = cfg
        self.window = tuple(window)
        self.segmentor = UEMSegmentor(
            cfg.vit, self.window, cfg.layers, cfg.fpn_dim, cfg.dino_mlp_hidden,
            cfg.segmentor_head, cfg.num_classes, cfg.gmm_components)
        self.ood_projector = MLP(cfg.vit.embed_dim, cfg.projector_hidden, cfg.projector_dim,
                                 cfg.projector_layers)
        self.ood_head = build_head(cfg.uem_head, cfg.projector_dim, 2, cfg.gmm_components)

    @property
    def grid(self) -> tuple[int, int]:
        return self.segmentor.backbone.dinov2.grid

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seg_logits, tokens = self.segmentor(x)
        proj = self.ood_projector(tokens)
        h, w = self.grid
        proj = proj.transpose(1, 2).reshape(proj.shape[0], proj.shape[2], h, w)
        return seg_logits, self.ood_head(proj)
