"""Batched tiling equals the official sequential protocol; one backbone pass per window."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from uem_tiny import WINDOW, tiny_network

from ood_perception.errors import ConfigurationError
from ood_perception.models.tiling import (
    ScoredNetwork,
    SingleWindow,
    SlidingWindow,
    covers_like_official,
    enumerate_windows,
    official_starts,
    window_starts,
)
from ood_perception.models.uem.network import UEMNetwork
from ood_perception.models.uem.scores import ScoreHead


def official_window(network: UEMNetwork, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official forward: forward_features and get_intermediate_layers as two passes."""
    vit = network.segmentor.backbone.dinov2
    final, _ = vit(x)
    _, levels = vit(x, layers=network.cfg.layers)
    feats = network.segmentor.backbone.learnable_layers(final, levels, vit.grid)
    seg = network.segmentor.segmentation_head(feats)
    proj = network.ood_projector(final)
    proj = proj.view(x.shape[0], *vit.grid, -1).permute(0, 3, 1, 2)
    return seg, network.ood_head(proj)


def official_sliding(network: UEMNetwork, x: torch.Tensor, stride: int) -> torch.Tensor:
    """`sliding_window_inference` + LLR: sequential windows, official enumeration."""
    b, _, height, width = x.shape
    wh, ww = WINDOW
    seg_sum = torch.zeros(b, network.cfg.num_classes, height, width)
    uem_sum = torch.zeros(b, 2, height, width)
    count = torch.zeros(b, height, width)
    for top in official_starts(height, wh, stride):
        for left in official_starts(width, ww, stride):
            seg, uem = official_window(network, x[:, :, top:top + wh, left:left + ww])
            seg_sum[:, :, top:top + wh, left:left + ww] += F.interpolate(
                seg, size=WINDOW, mode="bilinear", align_corners=False)
            uem_sum[:, :, top:top + wh, left:left + ww] += F.interpolate(
                uem, size=WINDOW, mode="bilinear", align_corners=False)
            count[:, top:top + wh, left:left + ww] += 1
    seg_avg, uem_avg = seg_sum / count[:, None], uem_sum / count[:, None]
    return uem_avg[:, 1] - uem_avg[:, 0] - seg_avg.amax(1)


@pytest.mark.parametrize("variant", ["dd", "gg"])
def test_batched_tiling_equals_official_sequential(variant: str) -> None:
    network = tiny_network(variant)
    size, stride = (70, 112), 10
    tiled = ScoredNetwork(SlidingWindow(network, size, WINDOW, stride), ScoreHead("llr"))
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        score, classes = tiled(x)
        expected = official_sliding(network, x, stride)
    assert score.shape == classes.shape == (2, *size)
    torch.testing.assert_close(score, expected, atol=1e-4, rtol=1e-4)


def test_one_backbone_pass_per_window() -> None:
    network = tiny_network("gd")
    size = (70, 112)
    tiled = SlidingWindow(network, size, WINDOW, 14)
    calls = []
    network.segmentor.backbone.dinov2.register_forward_hook(
        lambda _m, inputs, _o: calls.append(inputs[0].shape[0]))
    with torch.no_grad():
        tiled(torch.randn(3, 3, *size))
    assert calls == [3 * len(tiled.windows)]


def test_official_enumeration_on_cityscapes() -> None:
    assert len(official_starts(1024, 518, 140)) == 5
    assert len(official_starts(2048, 1036, 140)) == 9
    assert len(enumerate_windows((1024, 2048), (518, 1036), 140)) == 45
    assert window_starts(2048, 1036, 140) == official_starts(2048, 1036, 140)


def test_corrected_enumeration_covers_where_official_does_not() -> None:
    # (length - window) % stride == 0: the official loop drops the last strip.
    assert official_starts(100, 60, 20) == [0, 20]
    assert window_starts(100, 60, 20) == [0, 20, 40]
    assert official_starts(60, 60, 20) == []
    assert window_starts(60, 60, 20) == [0]


def test_window_larger_than_input() -> None:
    with pytest.raises(ConfigurationError, match="larger"):
        window_starts(50, 56, 14)


def test_single_window_resizes_the_frame() -> None:
    network = tiny_network("dd")
    single = SingleWindow(network, (112, 168), WINDOW)
    x = torch.randn(1, 3, 112, 168)
    with torch.no_grad():
        seg, uem = single(x)
        small_seg, _ = network(F.interpolate(x, size=WINDOW, mode="bilinear"))
    assert seg.shape == (1, 5, 112, 168) and uem.shape == (1, 2, 112, 168)
    expected = F.interpolate(small_seg, size=(112, 168), mode="bilinear")
    torch.testing.assert_close(seg, expected)


def test_sizes_the_official_enumeration_leaves_uncovered_are_flagged() -> None:
    """Official: 1024x2048 with 518x1036 / 140 is covered; 40x72 with 16x32 / 10 is not
    ((72 - 32) % 10 == 0 drops the last column of windows)."""
    assert covers_like_official((1024, 2048), (518, 1036), 140)
    assert not covers_like_official((40, 72), (16, 32), 10)
    assert official_starts(72, 32, 10)[-1] + 32 < 72 == window_starts(72, 32, 10)[-1] + 32


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_window_chunks_give_the_same_scores(chunk: int) -> None:
    network = tiny_network("gg")
    size = (70, 112)
    whole = ScoredNetwork(SlidingWindow(network, size, WINDOW, 14), ScoreHead("llr"))
    chunked = ScoredNetwork(SlidingWindow(network, size, WINDOW, 14, chunk), ScoreHead("llr"))
    calls = []
    network.segmentor.backbone.dinov2.register_forward_hook(
        lambda _m, inputs, _o: calls.append(inputs[0].shape[0]))
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = whole(x)
        calls.clear()
        score, classes = chunked(x)
    assert calls == [2 * chunk] * (6 // chunk)
    torch.testing.assert_close(score, expected[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(classes, expected[1])


def test_window_chunk_must_divide_the_window_count() -> None:
    with pytest.raises(ConfigurationError, match="divide the 6 windows.*1, 2, 3, 6; got 4"):
        SlidingWindow(tiny_network("dd"), (70, 112), WINDOW, 14, chunk=4)




class _TwoMaps(torch.nn.Module):
    """A stand-in network: (F [n, 4, h/4, w/4], U [n, 2, h/4, w/4]) from one strided conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 4, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.conv(x)
        return maps, maps[:, :2]


def test_windows_are_summed_into_slices_of_the_running_sum(tmp_path) -> None:
    """In the graph every window is added to slices of the running sum (no zero-padded
    frame-size copy per window: ONNX Runtime computed those ahead of the sums and held them,
    8 GB at 1024x2048), and ONNX Runtime gives PyTorch's average."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    model = SlidingWindow(_TwoMaps(), (40, 72), (16, 32), 10).eval()
    x = torch.randn(1, 3, 40, 72)
    path = str(tmp_path / "merge.onnx")
    torch.onnx.export(model, (x,), path, input_names=["x"], dynamo=True, opset_version=18)
    assert "Pad" not in {node.op_type for node in onnx.load(path).graph.node}
    seg, uem = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
        None, {"x": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    np.testing.assert_allclose(seg, expected[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(uem, expected[1].numpy(), atol=1e-6)
