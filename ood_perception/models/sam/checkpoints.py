"""Official SAM checkpoints (segment-anything `sam_vit_{b,l,h}_*.pth`, MobileSAM `mobile_sam.pt`)
-> strict loading, without running code.

Both are plain state dicts under `image_encoder.*`, `prompt_encoder.*`, `mask_decoder.*`, read
with `torch.load(weights_only=True)`. Keys that box prompts with a single-mask output never use
are dropped by name (`not_needed`); every other key must match the model exactly.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ood_perception.errors import CheckpointError
from ood_perception.models.loading import load_strict
from ood_perception.models.sam.mask_decoder import NUM_MASK_TOKENS
from ood_perception.models.sam.sam import Sam
from ood_perception.models.sam.tiny_vit import TinyViT

# MobileSAM keeps TinyViT's ImageNet classifier; its neck replaced it.
TINY_VIT_CLASSES = 1000
# Channels of the mask prompt's downscaling convolutions (segment-anything `mask_in_chans`).
MASK_IN_CHANS = 16


def _mask_prompt_shapes(dim: int) -> dict[str, tuple[int, ...]]:
    """`mask_downscaling` (conv, LayerNorm2d, GELU, conv, LayerNorm2d, GELU, conv) shapes."""
    c1, c2 = MASK_IN_CHANS // 4, MASK_IN_CHANS
    return {"0.weight": (c1, 1, 2, 2), "0.bias": (c1,), "1.weight": (c1,), "1.bias": (c1,),
            "3.weight": (c2, c1, 2, 2), "3.bias": (c2,), "4.weight": (c2,), "4.bias": (c2,),
            "6.weight": (dim, c2, 1, 1), "6.bias": (dim,)}


def not_needed(model: Sam) -> dict[str, tuple[int, ...]]:
    """Official key -> shape of every tensor the model leaves out: point and mask prompts,
    the three multi-mask hypernetworks, and (MobileSAM) TinyViT's classifier head."""
    dim = model.prompt_encoder.embed_dim
    keys: dict[str, tuple[int, ...]] = {
        "prompt_encoder.point_embeddings.0.weight": (1, dim),
        "prompt_encoder.point_embeddings.1.weight": (1, dim),
        "prompt_encoder.not_a_point_embed.weight": (1, dim),
    }
    for name, shape in _mask_prompt_shapes(dim).items():
        keys[f"prompt_encoder.mask_downscaling.{name}"] = shape
    hyper = model.mask_decoder.output_hypernetworks_mlps[0]
    for token in range(1, NUM_MASK_TOKENS):
        for name, tensor in hyper.state_dict().items():
            keys[f"mask_decoder.output_hypernetworks_mlps.{token}.{name}"] = tuple(tensor.shape)
    if isinstance(model.image_encoder, TinyViT):
        width = model.image_encoder.neck[0].in_channels
        keys["image_encoder.norm_head.weight"] = keys["image_encoder.norm_head.bias"] = (width,)
        keys["image_encoder.head.weight"] = (TINY_VIT_CLASSES, width)
        keys["image_encoder.head.bias"] = (TINY_VIT_CLASSES,)
    return keys


def read_sam_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an official SAM / MobileSAM file (tensors only, no code run)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"SAM checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path} is not a readable SAM checkpoint: {first}") from exc
    if not isinstance(payload, dict) or not payload or not all(
            isinstance(v, torch.Tensor) for v in payload.values()):
        raise CheckpointError(f"{path} is not a SAM state dict (a flat dict of tensors under "
                              "image_encoder.*, prompt_encoder.*, mask_decoder.*)")
    return dict(payload)


def inference_state(state: dict[str, torch.Tensor], model: Sam) -> dict[str, torch.Tensor]:
    """Drop the keys listed by `not_needed` (those present: a classifier head is MobileSAM's
    only); every other key is left for strict loading to check."""
    dropped = not_needed(model)
    return {key: value for key, value in state.items() if key not in dropped}


def load_sam_checkpoint(model: Sam, path: str | Path) -> Sam:
    """Official checkpoint -> `model`, strictly (missing, extra or mis-shaped keys listed)."""
    load_strict(model, inference_state(read_sam_checkpoint(path), model), str(path))
    return model
