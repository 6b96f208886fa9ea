"""The packaged official UEM protocol: same scores as the batched product, twice the passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from uem_tiny import WINDOW, tiny_network

from ood_perception.errors import ConfigurationError
from ood_perception.export.onnx import sample_images
from ood_perception.models.registry import ExportRequest, build_model
from ood_perception.models.tiling import SlidingWindow
from ood_perception.models.uem.official import OfficialSlidingWindow, official_protocol


@pytest.mark.parametrize("variant", ["dd", "gg"])
def test_sequential_two_pass_equals_batched_one_pass(variant: str) -> None:
    network = tiny_network(variant)
    size, stride = (70, 112), 10
    official = OfficialSlidingWindow(network, size, WINDOW, stride)
    batched = SlidingWindow(network, size, WINDOW, stride)
    calls = []
    network.segmentor.backbone.dinov2.register_forward_hook(
        lambda _m, inputs, _o: calls.append(inputs[0].shape[0]))
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        seg, uem = official(x)
        passes = len(calls)
        expected_seg, expected_uem = batched(x)
    windows = len(official.rows) * len(official.cols)
    assert windows == len(batched.windows) == 3 * 4
    assert passes == 2 * windows and calls[-1] == 2 * windows
    torch.testing.assert_close(seg, expected_seg, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(uem, expected_uem, atol=1e-4, rtol=1e-4)


def test_uncovered_input_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="uncovered"):
        OfficialSlidingWindow(tiny_network(), (56, 104), WINDOW, 20)  # 104 - 84 = 20


def test_official_protocol_of_a_registry_model() -> None:
    deploy = build_model(ExportRequest(model="uem-dinov2-s", random_init=True, variant="gd",
                                       input_size=(70, 126), window=(56, 84), stride=28))
    official = official_protocol(deploy)
    images = torch.from_numpy(sample_images(deploy.info, batch=1))
    with torch.no_grad():
        score, classes = deploy(images)
        official_score, official_classes = official(images)
    assert official.info == deploy.info
    np.testing.assert_allclose(official_score.numpy(), score.numpy(), rtol=1e-3, atol=1e-3)
    assert (official_classes == classes).float().mean() > 0.999
    single = build_model(ExportRequest(model="uem-dinov2-s", random_init=True,
                                       input_size=(56, 84), window=(56, 84), single_window=True))
    with pytest.raises(ConfigurationError, match="single-window"):
        official_protocol(single)
