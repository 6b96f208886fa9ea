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


def official_segmentor_state(segmentor: torch.nn.Module,
                             memory_size: int = 16) -> dict[str, torch.Tensor]:
    """Our segmentor state in the official layout, GMM training buffers included."""
    state = dict(segmentor.state_dict())
    state.update(_gmm_training_state(segmentor, "segmentation_head", memory_size))
    return state


def official_uem_state(network: torch.nn.Module, memory_size: int = 16) -> dict[str, torch.Tensor]:
    """Our UEMNetwork state in the official layout, GMM training buffers included."""
    state = dict(network.state_dict())
    state.update({"segmentor." + k: v for k, v in
                  _gmm_training_state(network.segmentor, "segmentation_head",
                                      memory_size).items()})
    state.update(_gmm_training_state(network, "ood_head", memory_size))
    return state


def _gmm_training_state(parent: torch.nn.Module, name: str,
                        memory_size: int) -> dict[str, torch.Tensor]:
    head = getattr(parent, name)
    if not hasattr(head, "means"):
        return {}
    classes, components, dim = head.means.shape
    return {
        f"{name}.queue": torch.randn(classes * components, dim, memory_size),
        f"{name}.queue_ptr": torch.zeros(classes * components, dtype=torch.long),
        f"{name}.iteration_counter": torch.zeros(1),
        f"{name}.eye_matrix": torch.ones(dim),
    }
