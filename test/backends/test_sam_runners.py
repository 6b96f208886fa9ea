"""SAM runners: ONNX Runtime and torch agree on the exported tiny SAM; zero boxes skip the
decoder; the TensorRT decoder profile and engine keys, which need no TensorRT."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from ood_perception.backends.sam import create_sam_runner
from ood_perception.backends.sam_tensorrt import decoder_shapes
from ood_perception.backends.tensorrt import EngineKey, cached_engine_status, engine_path_for
from ood_perception.contract import SAM_BOX_BATCH_NAME, SAM_BOXES_NAME, SAM_EMBEDDINGS_NAME
from ood_perception.errors import ConfigurationError
from ood_perception.export.s2m import sample_boxes
from ood_perception.models.sam.deploy import decoder_path_for


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


def test_engine_keys_from_before_profiles_still_match(tmp_path: Path):
    key = EngineKey(onnx_sha256="ab" * 32, tensorrt_version="10.3.0", gpu_name="NVIDIA H100",
                    compute_capability="9.0", precision="fp16", max_batch=1)
    onnx_path = tmp_path / "m.onnx"
    engine = engine_path_for(onnx_path, "fp16")
    engine.write_bytes(b"engine")
    old = {k: v for k, v in asdict(key).items() if k != "profile"}
    engine.with_name(engine.name + ".json").write_text(json.dumps(old))
    assert cached_engine_status(onnx_path, key)[0]
    profiled = EngineKey(**{**asdict(key), "profile": json.dumps({"boxes": [[1, 4]]})})
    usable, reason = cached_engine_status(onnx_path, profiled)
    assert not usable and "profile" in reason
