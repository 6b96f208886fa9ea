"""Pipeline through the tiny ONNX model: detection in place, mixed sizes, config swaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_model import ROAD_ID, SKY_ID, TinyMagentaModel, export_tiny_model

from ood_perception.backends.onnxruntime import OnnxRuntimeBackend
from ood_perception.core.pipeline import GPU_STAGES, STAGES, Pipeline, runs_on_gpu
from ood_perception.core.postprocess import PostprocessConfig
from ood_perception.errors import ConfigurationError


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def scene(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Grey RGB frame with a magenta square at box (x, y, w, h)."""
    frame = np.full((height, width, 3), 128, np.uint8)
    x, y, w, h = box
    frame[y:y + h, x:x + w] = (255, 0, 255)
    return frame


@pytest.fixture
def pipeline(tiny_model_path: Path) -> Pipeline:
    backend = OnnxRuntimeBackend(tiny_model_path)
    yield Pipeline(backend, PostprocessConfig(score_threshold=0.5, min_obstacle_area=20))
    backend.close()


def test_magenta_square_found_in_place(pipeline: Pipeline):
    box = (200, 100, 120, 90)
    [result] = pipeline.process([scene(480, 640, box)])
    assert result.anomaly_score.shape == (480, 640) and result.anomaly_score.dtype == np.float32
    assert result.mask.shape == (480, 640) and result.semantic.shape == (480, 640)
    assert len(result.obstacles) == 1
    x, y, w, h = result.obstacles[0].bbox
    assert abs(x - 200) <= 10 and abs(y - 100) <= 10
    assert abs(w - 120) <= 20 and abs(h - 90) <= 20
    assert result.obstacles[0].score_max == pytest.approx(1.0, abs=1e-3)
    assert result.semantic[10, 10] == SKY_ID and result.semantic[470, 10] == ROAD_ID
    assert set(result.timings) == set(STAGES)
    assert all(ms >= 0 for ms in result.timings.values())


def test_several_sizes_in_one_batch(pipeline: Pipeline):
    frames = [scene(64, 96, (10, 10, 20, 20)), scene(720, 1280, (900, 400, 200, 160)),
              scene(100, 100, (0, 0, 1, 1))]
    results = pipeline.process(frames)
    assert [r.anomaly_score.shape for r in results] == [(64, 96), (720, 1280), (100, 100)]
    assert [len(r.obstacles) for r in results] == [1, 1, 0]
    cx, cy = results[1].obstacles[0].centroid
    assert abs(cx - 1000) < 15 and abs(cy - 480) < 15
    assert results[0].timings["inference"] == results[1].timings["inference"]
    assert pipeline.process([]) == []


def test_update_config_and_gating(pipeline: Pipeline):
    frame = scene(128, 192, (20, 10, 40, 30))  # in the upper half: "sky" in the tiny model
    assert len(pipeline.process([frame])[0].obstacles) == 1
    pipeline.update_config(PostprocessConfig(score_threshold=0.5, min_obstacle_area=20,
                                             gating_classes=(ROAD_ID,)))
    assert pipeline.process([frame])[0].obstacles == []
    pipeline.update_config(PostprocessConfig(score_threshold=1.5, min_obstacle_area=20))
    assert not pipeline.process([frame])[0].mask.any()
    assert pipeline.config.score_threshold == 1.5
    with pytest.raises(ConfigurationError):
        pipeline.update_config({"score_threshold": 0.5})


def test_overlay_only_on_request(pipeline: Pipeline):
    frame = scene(120, 160, (40, 40, 40, 40))
    [result] = pipeline.process([frame])
    overlay = pipeline.overlay(frame, result)
    assert overlay.shape == (120, 160, 3) and overlay.dtype == np.uint8
    assert (overlay[:, :, 2] == 255).any()  # red outline drawn


def test_rejects_non_rgb_frames(pipeline: Pipeline):
    with pytest.raises(ConfigurationError):
        pipeline.process([np.zeros((10, 10), np.uint8)])


def test_fixed_batch_graph_takes_any_number_of_frames(tmp_path: Path):
    backend = OnnxRuntimeBackend(export_tiny_model(tmp_path / "b2.onnx", fixed_batch=2))
    pipeline = Pipeline(backend, PostprocessConfig(score_threshold=0.5, min_obstacle_area=20))
    frames = [scene(96, 144, (10 + 30 * i, 60, 20, 20)) for i in range(3)]
    results = pipeline.process(frames)
    assert [round(r.obstacles[0].centroid[0]) for r in results] == [20, 50, 80]


def torch_tiny_backend(device: str = "cpu", **options):
    """The tiny magenta model as a torch backend (the same module the ONNX was exported from)."""
    from ood_perception.backends.torch import TorchBackend
    from ood_perception.contract import ModelInfo

    model = TinyMagentaModel((64, 96))
    model.info = ModelInfo(input_height=64, input_width=96, score_range=(0.0, 1.0))
    return TorchBackend(model, device=device, **options)


def check_tensor_path_matches_host_path(pipeline: Pipeline, tensor: Pipeline) -> None:
    frames = [scene(480, 640, (200, 100, 120, 90)), scene(64, 96, (10, 10, 20, 20)),
              scene(720, 1280, (900, 400, 200, 160)), scene(480, 640, (20, 300, 60, 60))]
    host, ours = pipeline.process(frames), tensor.process(frames)
    for a, b in zip(host, ours, strict=True):
        assert b.anomaly_score.shape == a.anomaly_score.shape and b.mask.dtype == np.uint8
        assert b.semantic.shape == a.semantic.shape
        assert np.abs(a.anomaly_score - b.anomaly_score).mean() < 0.01
        assert (a.mask == b.mask).mean() > 0.995 and (a.semantic == b.semantic).mean() > 0.999
        assert len(a.obstacles) == len(b.obstacles) == 1
        assert np.abs(np.subtract(a.obstacles[0].bbox, b.obstacles[0].bbox)).max() <= 3
        assert set(b.timings) == set(GPU_STAGES)
    assert ours[0].timings["upload"] == ours[3].timings["upload"]


def test_tensor_path_on_cpu_matches_host_path(pipeline: Pipeline):
    tensor = Pipeline(torch_tiny_backend(), pipeline.config, tensor_path=True)
    assert not runs_on_gpu(tensor.backend)
    check_tensor_path_matches_host_path(pipeline, tensor)


def test_tensor_path_needs_run_torch(pipeline: Pipeline):
    with pytest.raises(ConfigurationError, match="run_torch"):
        Pipeline(pipeline.backend, pipeline.config, tensor_path=True)
    with pytest.raises(ConfigurationError):
        Pipeline(torch_tiny_backend(), pipeline.config, tensor_path=True).process(
            [np.zeros((10, 10), np.uint8)])


@pytest.mark.gpu
@pytest.mark.skipif(not torch_cuda_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_gpu_path_matches_host_path(pipeline: Pipeline, precision: str):
    backend = torch_tiny_backend("cuda", precision=precision)
    gpu_pipeline = Pipeline(backend, pipeline.config)
    assert runs_on_gpu(backend)
    check_tensor_path_matches_host_path(pipeline, gpu_pipeline)
