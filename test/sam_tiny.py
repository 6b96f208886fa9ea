"""Tiny SAM configurations and segment-anything 1.0 (PyPI) as the reference, for tests.

segment-anything's package `__init__` imports its predictor, whose transforms need
torchvision; only `segment_anything.modeling` (torch alone) is loaded here, through a bare
package entry, and `ResizeLongestSide`'s coordinate rule is transcribed.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ood_perception.models.sam.checkpoints import not_needed
from ood_perception.models.sam.image_encoder import SamViTConfig
from ood_perception.models.sam.sam import Sam, SamConfig, resized_size
from ood_perception.models.sam.tiny_vit import TinyViTConfig

# 64x64 input, 4x4 embedding grid; windows of 3 pad the grid, one global block.
TINY_VIT = SamConfig(SamViTConfig(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,),
                                  img_size=64, window_size=3))
# Stage grids 16, 8, 4, 4 (the merge into a 320-wide stage keeps the grid): windows of 3 pad,
# the window of 4 takes the direct path.
TINY_MOBILE = SamConfig(TinyViTConfig(img_size=64, embed_dims=(8, 16, 24, 320),
                                      num_heads=(1, 2, 2, 4), window_sizes=(3, 3, 4, 3)))


def segment_anything_modeling():
    """`segment_anything.modeling` without running the package `__init__`; skips the test when
    segment-anything is not installed (`pip install segment-anything==1.0`)."""
    if "segment_anything" not in sys.modules:
        spec = importlib.util.find_spec("segment_anything")
        if spec is None or spec.submodule_search_locations is None:
            pytest.skip("segment-anything 1.0 is not installed")
        package = types.ModuleType("segment_anything")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["segment_anything"] = package
    return importlib.import_module("segment_anything.modeling")


def reference_sam(cfg: SamConfig):
    """segment-anything's `Sam` with the ViT settings of `cfg` (its `_build_sam`)."""
    modeling = segment_anything_modeling()
    enc = cfg.encoder
    grid = enc.img_size // enc.patch_size
    encoder = modeling.ImageEncoderViT(
        depth=enc.depth, embed_dim=enc.embed_dim, img_size=enc.img_size, mlp_ratio=enc.mlp_ratio,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=enc.num_heads,
        patch_size=enc.patch_size, qkv_bias=True, use_rel_pos=True,
        global_attn_indexes=enc.global_attn_indexes, window_size=enc.window_size,
        out_chans=enc.out_chans)
    prompt = modeling.PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid),
                                    input_image_size=(enc.img_size, enc.img_size),
                                    mask_in_chans=16)
    decoder = modeling.MaskDecoder(
        num_multimask_outputs=3, transformer=modeling.TwoWayTransformer(
            depth=cfg.decoder_depth, embedding_dim=256, mlp_dim=cfg.decoder_mlp_dim,
            num_heads=cfg.decoder_heads),
        transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256)
    return modeling.Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder).eval()


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter and buffer random, keeping the signal's scale through the layers
    (official inits zero the relative positions and several biases). Each tensor's values
    depend on its name and `seed` only, so modules with other key sets or orders get the same
    values for the keys they share."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
            values = torch.randn(tensor.shape, generator=generator)
            if name.endswith("running_var"):
                values = 1.0 + 0.1 * values.abs()
            elif tensor.ndim == 1 and name.endswith("weight"):  # norm scales
                values = 1.0 + 0.1 * values
            elif tensor.ndim == 1 or name.endswith("running_mean"):
                values = 0.02 * values
            else:
                values = values / max(tensor[0].numel(), 1) ** 0.5
            tensor.copy_(values)
    return module


def save_official(state: dict[str, torch.Tensor], path: Path) -> Path:
    """An official-layout checkpoint file: the plain state dict, as segment-anything ships."""
    torch.save(state, path)
    return path


def ours_from(state: dict[str, torch.Tensor], cfg: SamConfig, tmp_path: Path) -> Sam:
    """Our SAM loaded from an official-layout state through the checkpoint loader."""
    from ood_perception.models.sam.checkpoints import load_sam_checkpoint

    return load_sam_checkpoint(Sam(cfg), save_official(state, tmp_path / "sam.pth")).eval()


def apply_boxes(boxes: np.ndarray, original: tuple[int, int], long_side: int) -> np.ndarray:
    """segment-anything `ResizeLongestSide.apply_boxes` (transcribed)."""
    new_h, new_w = resized_size(*original, long_side)
    coords = boxes.reshape(-1, 2, 2).astype(float).copy()
    coords[..., 0] *= new_w / original[1]
    coords[..., 1] *= new_h / original[0]
    return coords.reshape(-1, 4)


def pil_resized(frame: np.ndarray, long_side: int) -> np.ndarray:
    """segment-anything `ResizeLongestSide.apply_image`: PIL bilinear resize of uint8 RGB."""
    new_h, new_w = resized_size(*frame.shape[:2], long_side)
    return np.array(Image.fromarray(frame).resize((new_w, new_h), Image.BILINEAR))


def official_state(model: Sam, seed: int = 0) -> dict[str, torch.Tensor]:
    """`model`'s weights in the official layout, the keys it leaves out filled with seeded
    random values: a stand-in for the official files."""
    generator = torch.Generator().manual_seed(seed)
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    for key, shape in not_needed(model).items():
        state[key] = torch.randn(shape, generator=generator) * 0.02
    return state
