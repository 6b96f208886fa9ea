"""UEM network shapes, official presets and configuration errors."""

from __future__ import annotations

import pytest
import torch
from uem_tiny import WINDOW, tiny_config, tiny_network

from ood_perception.errors import ConfigurationError
from ood_perception.models.uem.network import UEMConfig, UEMNetwork, uem_config


@pytest.mark.parametrize("variant", ["dd", "gd", "gg"])
def test_tiny_network_shapes(variant: str) -> None:
    network = tiny_network(variant)
    with torch.no_grad():
        seg, uem = network(torch.randn(2, 3, *WINDOW))
    assert seg.shape == (2, 5, 16, 24)  # 4x the 4x6 patch grid
    assert uem.shape == (2, 2, 4, 6)
    assert torch.isfinite(seg).all() and torch.isfinite(uem).all()
    assert network.cfg.variant == variant


def test_official_vit_b_preset() -> None:
    cfg = uem_config("b", "gg")
    assert (cfg.vit.embed_dim, cfg.vit.depth, cfg.vit.num_heads) == (768, 12, 12)
    assert cfg.vit.num_register_tokens == 4 and cfg.layers == (1, 4, 8, 11)
    assert (cfg.fpn_dim, cfg.dino_mlp_hidden, cfg.num_classes) == (256, 512, 19)
    assert (cfg.segmentor_head, cfg.uem_head, cfg.gmm_components) == ("gmm", "gmm", 5)


def test_official_key_layout_for_uem_b() -> None:
    keys = set(UEMNetwork(uem_config("b", "gd"), (518, 1036)).state_dict())
    for key in ("segmentor.backbone.dinov2.register_tokens",
                "segmentor.backbone.dinov2.blocks.11.ls2.gamma",
                "segmentor.backbone.learnable_layers.fpn1.2.running_var",
                "segmentor.backbone.learnable_layers.dino_mlp._layers.2.weight",
                "segmentor.backbone.learnable_layers.heads.3.8.weight",
                "segmentor.segmentation_head.means", "ood_projector._layers.4.weight",
                "ood_head._head.weight"):
        assert key in keys, key
    assert not any(k.endswith(("queue", "pos_cache")) for k in keys)


def test_bad_configuration() -> None:
    with pytest.raises(ConfigurationError, match="variant"):
        uem_config("b", "dg")
    with pytest.raises(ConfigurationError, match="layers"):
        UEMConfig(layers=(1, 2, 3))
    with pytest.raises(ConfigurationError, match="patch size"):
        UEMNetwork(tiny_config(), (50, 84))
