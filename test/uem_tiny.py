"""Tiny UEM configurations and random weights shared by the UEM tests."""

from __future__ import annotations

import torch

from ood_perception.models.backbones.dinov2 import ViTConfig
from ood_perception.models.uem.network import VARIANTS, UEMConfig, UEMNetwork

WINDOW = (56, 84)


def tiny_config(variant: str = "dd") -> UEMConfig:
    seg_head, uem_head = VARIANTS[variant]
    return UEMConfig(
        vit=ViTConfig(embed_dim=32, depth=4, num_heads=2, pos_grid=4), layers=(0, 1, 2, 3),
        fpn_dim=16, dino_mlp_hidden=24, num_classes=5, segmentor_head=seg_head,
        projector_hidden=24, projector_dim=16, uem_head=uem_head, gmm_components=3)


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial weights everywhere (BN statistics, GMM diagonals, LayerScale included)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith(("running_var", "diagonal")):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.3)
    if hasattr(module, "segmentor"):
        module.segmentor.backbone.dinov2.refresh_pos_cache()
    return module.eval()


def tiny_network(variant: str = "dd", seed: int = 0) -> UEMNetwork:
    return randomize(UEMNetwork(tiny_config(variant), WINDOW), seed)
