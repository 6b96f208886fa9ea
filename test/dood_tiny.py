"""Tiny DOoD configurations, random weights and official-layout checkpoints for the tests."""

from __future__ import annotations

from pathlib import Path

import torch

from ood_perception.models.backbones.mmseg_vit import MMSegVisionTransformer, MMSegViTConfig
from ood_perception.models.dood.checkpoints import save_official_checkpoint
from ood_perception.models.dood.diffusion import DiffusionModel
from ood_perception.models.dood.network import MMSegSegmentor
from ood_perception.models.dood.segmenter_head import SegmenterMaskHead
from ood_perception.models.dood.setr_head import SETRUpHead
from ood_perception.models.dood.unet0d import UNet0DConfig

DIM = 64
CLASSES = 5
TINY_VIT = MMSegViTConfig(embed_dim=DIM, depth=2, num_heads=2, pos_grid=(4, 4), extra_tokens=2,
                          final_norm=True, interpolate_mode="bicubic")
TINY_DENOISER = UNet0DConfig(DIM, DIM, levels=2, middle_blocks=1)


def tiny_segmenter(size: tuple[int, int]) -> MMSegSegmentor:
    """A Segmenter-shaped segmentor (distilled ViT + mask head) at `size`."""
    return MMSegSegmentor(MMSegVisionTransformer(TINY_VIT, size),
                          SegmenterMaskHead(DIM, DIM, num_layers=1, num_heads=2,
                                            num_classes=CLASSES))


def randomize(module: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """Every float tensor random (norm statistics included), positive variances."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith(("running_var", "normalization.scale")):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * scale)
    for child in module.modules():
        if hasattr(child, "refresh_pos_cache"):
            child.refresh_pos_cache()
    return module.eval()


def official_segm_state(segmentor: MMSegSegmentor, seed: int = 0) -> dict[str, torch.Tensor]:
    """`*_segm.pth` state: the segmentor plus a SETR-style auxiliary head (dropped on load)."""
    aux = randomize(SETRUpHead(DIM, 16, num_classes=CLASSES), seed)
    state = dict(segmentor.state_dict())
    state.update({f"auxiliary_head.0.{k}": v for k, v in aux.state_dict().items()})
    return state


def official_diff_state(model: DiffusionModel, queue: int = 3) -> dict[str, torch.Tensor]:
    """`*_diff.pth` state: statistic queues and buffers around the model's shift and scale."""
    shift, scale = model.normalization.shift, model.normalization.scale
    mins = (shift - scale).expand(queue, -1).clone()
    maxs = (shift + scale).expand(queue, -1).clone()
    state = {"normalization.mins": mins, "normalization.maxs": maxs,
             "normalization.means": torch.zeros_like(mins), "normalization.stds": mins * 0 + 1,
             "normalization.queue_ptr": torch.zeros(1, dtype=torch.long),
             "normalization.min": mins[0], "normalization.max": maxs[0],
             "normalization.mean": torch.zeros_like(shift), "normalization.std": shift * 0 + 1}
    state.update({k: v for k, v in model.state_dict().items()})
    return state


def write_checkpoint(state: dict[str, torch.Tensor], path: Path) -> Path:
    return save_official_checkpoint(state, path, {"producer": "test"})
