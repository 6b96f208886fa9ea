"""gpu_postprocess on CPU tensors: threshold and gating equal the host path's, and only the
anomalous window comes back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ood_perception.core import gpu_postprocess as gpu
from ood_perception.core.postprocess import PostprocessConfig
from ood_perception.core.postprocess import anomalous as host_anomalous


@pytest.mark.parametrize("dilation", [0, 1, 7])
def test_anomalous_on_the_device_equals_the_host(dilation: int):
    rng = np.random.default_rng(dilation)
    score = rng.random((90, 160), dtype=np.float32)
    semantic = rng.integers(0, 4, (9, 16), dtype=np.uint8).repeat(10, 0).repeat(10, 1)
    config = PostprocessConfig(0.7, gating_classes=(0, 2), gating_dilation=dilation)
    ours = gpu.anomalous(torch.from_numpy(score), torch.from_numpy(semantic), config)
    assert ours.dtype == torch.bool
    np.testing.assert_array_equal(ours.numpy().view(np.uint8),
                                  host_anomalous(score, semantic, config))
    ungated = gpu.anomalous(torch.from_numpy(score), None, config).numpy()
    np.testing.assert_array_equal(ungated, score > 0.7)


def test_anomalous_window_brings_back_the_box_only():
    binary = torch.zeros((40, 60), dtype=torch.bool)
    assert gpu.anomalous_window(binary, torch.zeros((40, 60))) is None
    binary[5, 7] = binary[20, 30] = True
    score = torch.arange(40 * 60, dtype=torch.float32).reshape(40, 60)
    offset, window, window_score = gpu.anomalous_window(binary, score)
    assert offset == (5, 7) and window.shape == window_score.shape == (16, 24)
    assert window.dtype == np.uint8 and window.sum() == 2 and window[15, 23] == 1
    assert window_score[0, 0] == 5 * 60 + 7
