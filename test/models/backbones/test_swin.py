"""Swin backbone: detectron2 names, shift masks, padding to windows, batch independence."""

from __future__ import annotations

import torch

from ood_perception.models.backbones.swin import (
    SWIN_B,
    SWIN_L,
    SWIN_T,
    SwinConfig,
    SwinTransformer,
    relative_position_index,
    shift_mask,
    window_partition,
    window_reverse,
)

TINY = SwinConfig(32, (2, 2, 2, 2), (1, 2, 4, 8), 4)


def test_swin_l_names_and_shapes() -> None:
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in SwinTransformer(SWIN_L).state_dict().items()}
    assert shapes["patch_embed.proj.weight"] == (192, 3, 4, 4)
    assert shapes["layers.2.blocks.17.attn.relative_position_bias_table"] == (529, 24)
    assert shapes["layers.2.blocks.17.attn.relative_position_index"] == (144, 144)
    assert shapes["layers.3.blocks.1.mlp.fc1.weight"] == (6144, 1536)
    assert shapes["layers.0.downsample.reduction.weight"] == (384, 768)
    assert shapes["layers.0.downsample.norm.weight"] == (768,)
    assert "layers.3.downsample.reduction.weight" not in shapes
    assert [shapes[f"norm{i}.weight"] for i in range(4)] == [(192,), (384,), (768,), (1536,)]


def test_variant_channels() -> None:
    assert SWIN_T.channels == (96, 192, 384, 768) and SWIN_T.window_size == 7
    assert SWIN_B.channels == (128, 256, 512, 1024) and SWIN_L.channels[-1] == 1536


def test_relative_position_index_is_symmetric_around_the_centre() -> None:
    index = relative_position_index(3)
    assert index.shape == (9, 9) and int(index.min()) == 0 and int(index.max()) == 24
    assert torch.all(index.diagonal() == 12)  # offset (0, 0) is the table's centre


def test_shift_mask_known_answer() -> None:
    mask = shift_mask(4, 4, 2, 1)
    assert mask.shape == (4, 2 * 2, 2 * 2)
    assert torch.all(mask[0] == 0)  # top-left window: one region
    # bottom-right window: four regions, each token sees only itself
    expected = torch.full((4, 4), -100.0).fill_diagonal_(0.0)
    assert torch.equal(mask[3], expected)
    # top-right window: rows in one band, columns split into 1 | 2
    assert mask[1].tolist() == [[0, -100, 0, -100], [-100, 0, -100, 0],
                                [0, -100, 0, -100], [-100, 0, -100, 0]]


def test_window_partition_round_trip() -> None:
    x = torch.randn(2, 6, 9, 5)
    windows = window_partition(x, 3)
    assert windows.shape == (2 * 6, 9, 5)
    assert torch.equal(window_reverse(windows, 3, 6, 9), x)


def test_feature_shapes_with_padding_to_windows() -> None:
    torch.manual_seed(0)
    model = SwinTransformer(TINY).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 72, 104))
    assert [tuple(f.shape) for f in feats] == [(1, 32, 18, 26), (1, 64, 9, 13),
                                               (1, 128, 5, 7), (1, 256, 3, 4)]


def test_batch_items_are_independent() -> None:
    torch.manual_seed(0)
    model = SwinTransformer(TINY).eval()
    x = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        batched = model(x)
        single = model(x[2:3])
    for a, b in zip(batched, single, strict=True):
        torch.testing.assert_close(a[2:3], b, atol=1e-5, rtol=1e-5)
