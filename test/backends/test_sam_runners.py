"""SAM runners: ONNX Runtime and torch agree on the exported tiny SAM; zero boxes skip the
decoder; the TensorRT decoder profile and engine keys, which need no TensorRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ood_perception.backends.sam import create_sam_runner
from ood_perception.backends.sam_tensorrt import decoder_shapes
from ood_perception.contract import SAM_BOX_BATCH_NAME, SAM_BOXES_NAME, SAM_EMBEDDINGS_NAME
from ood_perception.errors import ConfigurationError
from ood_perception.export.s2m import sample_boxes
from ood_perception.models.sam.deploy import decoder_path_for

try:
    import tensorrt  # noqa: F401

    HAVE_TENSORRT = torch.cuda.is_available()
except ImportError:
    HAVE_TENSORRT = False


@pytest.fixture(scope="module")
def runners(tiny_sam):
    onnx_runner = create_sam_runner("onnxruntime", tiny_sam.encoder)
    torch_runner = create_sam_runner("torch", tiny_sam.encoder)
    yield onnx_runner, torch_runner
    onnx_runner.close()
    torch_runner.close()


def test_onnxruntime_and_torch_agree(runners):
    onnx_runner, torch_runner = runners
    assert onnx_runner.info == torch_runner.info
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    embeddings = onnx_runner.encode(frames)
    assert embeddings.shape == (2, 256, 4, 4)
    assert (embeddings - torch_runner.encode(torch.from_numpy(frames))).abs().max() < 1e-4
    for count in (0, 1, 17):
        boxes = torch.from_numpy(sample_boxes(count, onnx_runner.info, seed=count))
        index = torch.arange(count) % 2
        masks, iou = onnx_runner.decode(embeddings, boxes, index)
        expected_masks, expected_iou = torch_runner.decode(embeddings, boxes, index)
        assert masks.shape == (count, 1, 16, 16) and iou.shape == (count, 1)
        assert torch.allclose(masks, expected_masks, atol=1e-4)
        assert torch.allclose(iou, expected_iou, atol=1e-4)


def test_a_boxs_frame_index_picks_its_embedding(runners):
    onnx_runner, _ = runners
    frames = np.random.default_rng(1).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    embeddings = onnx_runner.encode(frames)
    box = torch.tensor([[5.0, 5.0, 40.0, 30.0]])
    first, _ = onnx_runner.decode(embeddings, box, torch.tensor([0]))
    second, _ = onnx_runner.decode(embeddings, box, torch.tensor([1]))
    alone, _ = onnx_runner.decode(embeddings[1:], box, torch.tensor([0]))
    assert not torch.allclose(first, second)
    assert torch.allclose(second, alone, atol=1e-5)


def test_wrong_frames_and_wrong_graphs_are_refused(runners, tiny_sam, tmp_path: Path):
    onnx_runner, _ = runners
    with pytest.raises(ConfigurationError, match="uint8"):
        onnx_runner.encode(np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(ConfigurationError, match="expected sam_image_encoder"):
        create_sam_runner("onnxruntime", decoder_path_for(tiny_sam.encoder))
    with pytest.raises(ConfigurationError, match="not found"):
        create_sam_runner("onnxruntime", tmp_path / "missing.onnx")
    with pytest.raises(ConfigurationError, match="unknown backend"):
        create_sam_runner("openvino", tiny_sam.encoder)


def test_tensorrt_decoder_profile_covers_boxes_and_frames(runners):
    onnx_runner, _ = runners
    shapes = decoder_shapes(onnx_runner.info, max_batch=4, max_boxes=32)
    assert shapes[SAM_EMBEDDINGS_NAME] == ((1, 256, 4, 4), (1, 256, 4, 4), (4, 256, 4, 4))
    assert shapes[SAM_BOXES_NAME] == ((1, 4), (8, 4), (32, 4))
    assert shapes[SAM_BOX_BATCH_NAME] == ((1,), (8,), (32,))
    with pytest.raises(ConfigurationError):
        decoder_shapes(onnx_runner.info, max_batch=1, max_boxes=0)


def _gpu_parity(runner, reference, precision_atol: float) -> None:
    """The runner on CUDA against the CPU fp32 torch runner: embeddings and 0/1/17 boxes."""
    frames = np.random.default_rng(2).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    expected = reference.encode(frames)
    embeddings = runner.encode(torch.from_numpy(frames).cuda())
    assert embeddings.is_cuda
    assert (embeddings.cpu() - expected).abs().max() < precision_atol
    for count in (0, 1, 17):
        boxes = torch.from_numpy(sample_boxes(count, reference.info, seed=count))
        index = torch.arange(count) % 2
        masks, iou = runner.decode(embeddings, boxes, index)
        want_masks, want_iou = reference.decode(expected, boxes, index)
        assert masks.shape == want_masks.shape
        assert (masks.cpu() - want_masks).abs().max(initial=0.0) < 10 * precision_atol
        assert (iou.cpu() - want_iou).abs().max(initial=0.0) < 10 * precision_atol


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_runner_on_cuda_matches_cpu(tiny_sam, runners):
    _, reference = runners
    runner = create_sam_runner("torch", tiny_sam.encoder, device="cuda")
    try:
        _gpu_parity(runner, reference, 1e-3)
    finally:
        runner.close()


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TENSORRT, reason="TensorRT is not installed on this machine")
def test_tensorrt_runner_matches_torch(tiny_sam, runners, tmp_path):
    _, reference = runners
    for suffix in (".onnx", ".decoder.onnx"):  # engines are cached beside the graphs
        source = tiny_sam.encoder.with_name("sam" + suffix)
        (tmp_path / ("sam" + suffix)).write_bytes(source.read_bytes())
    runner = create_sam_runner("tensorrt", tmp_path / "sam.onnx", precision="fp32",
                               max_batch=2, max_boxes=8)
    try:
        _gpu_parity(runner, reference, 1e-3)  # 17 boxes run as chunks of 8
    finally:
        runner.close()
