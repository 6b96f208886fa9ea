"""Our DINOv2 ViT equals the `transformers` implementation with the same random weights."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
)

from ood_perception.models.backbones.dinov2 import DinoVisionTransformer, ViTConfig

TINY = {"embed_dim": 32, "depth": 3, "num_heads": 2, "patch_size": 14, "pos_grid": 4}


def hf_model(cfg: ViTConfig) -> torch.nn.Module:
    kwargs = {"hidden_size": cfg.embed_dim, "num_hidden_layers": cfg.depth,
              "num_attention_heads": cfg.num_heads, "patch_size": cfg.patch_size,
              "image_size": cfg.patch_size * cfg.pos_grid, "layer_norm_eps": cfg.layer_norm_eps,
              "mlp_ratio": int(cfg.mlp_ratio), "layerscale_value": 0.5}
    if cfg.num_register_tokens:
        model = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(
            num_register_tokens=cfg.num_register_tokens, **kwargs))
    else:
        model = Dinov2Model(Dinov2Config(**kwargs))
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.2)
    return model.eval()


def to_official(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers names -> official DINOv2 names (q/k/v fused into qkv)."""
    out = {}
    for key, value in hf_state.items():
        key = (key.replace("embeddings.patch_embeddings.projection", "patch_embed.proj")
               .replace("embeddings.position_embeddings", "pos_embed")
               .replace("embeddings.", "").replace("encoder.layer.", "blocks.")
               .replace("layer_scale1.lambda1", "ls1.gamma")
               .replace("layer_scale2.lambda1", "ls2.gamma")
               .replace("attention.o_proj", "attn.proj")
               .replace("attention.output.dense", "attn.proj")
               .replace("layernorm.", "norm."))
        out[key] = value
    for key in [k for k in out if "attention.q_proj" in k or "attention.attention.query" in k]:
        for kind in ("weight", "bias"):
            if not key.endswith(kind):
                continue
            prefix = key.split(".attention.")[0]
            names = ([f"{prefix}.attention.{n}_proj.{kind}" for n in "qkv"]
                     if "q_proj" in key else
                     [f"{prefix}.attention.attention.{n}.{kind}"
                      for n in ("query", "key", "value")])
            out[f"{prefix}.attn.qkv.{kind}"] = torch.cat([out.pop(n) for n in names])
    return out


@pytest.mark.parametrize("registers,size", [(4, (56, 56)), (4, (42, 84)), (0, (56, 56))])
def test_vit_matches_transformers(registers: int, size: tuple[int, int]) -> None:
    cfg = ViTConfig(num_register_tokens=registers, **TINY)
    reference = hf_model(cfg)
    ours = DinoVisionTransformer(cfg, size)
    ours.load_state_dict(to_official(reference.state_dict()), strict=True)
    ours.eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        out = reference(pixel_values=x, output_hidden_states=True)
        tokens, levels = ours(x, layers=(0, 2))
    prefix = 1 + registers
    expected_final = out.last_hidden_state[:, prefix:]
    assert tokens.shape == (2, (size[0] // 14) * (size[1] // 14), 32)
    torch.testing.assert_close(tokens, expected_final, atol=1e-4, rtol=1e-4)
    for got, index in zip(levels, (0, 2), strict=True):
        expected = reference.layernorm(out.hidden_states[index + 1])[:, prefix:]
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(levels[-1], tokens)


def test_pos_cache_follows_loaded_weights() -> None:
    cfg = ViTConfig(**TINY)
    model = DinoVisionTransformer(cfg, (42, 84))
    state = model.state_dict()
    state["pos_embed"] = torch.randn_like(state["pos_embed"])
    before = model.pos_cache.clone()
    model.load_state_dict(state)
    assert not torch.allclose(before, model.pos_cache)
    assert "pos_cache" not in model.state_dict()
    assert model.pos_cache.shape == (1, 1 + 3 * 6, 32)


def test_swiglu_sizes_match_vit_g() -> None:
    cfg = ViTConfig(embed_dim=1536, depth=1, num_heads=24, ffn="swiglu")
    model = DinoVisionTransformer(cfg, (28, 28))
    state = model.state_dict()
    assert state["blocks.0.mlp.w12.weight"].shape == (2 * 4096, 1536)
    assert state["blocks.0.mlp.w3.weight"].shape == (1536, 4096)
