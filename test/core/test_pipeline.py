"""Pipeline through the tiny ONNX model: detection in place, mixed sizes, config swaps, the
outputs asked for per frame, BGR frames, and the tensor path against the host path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_model import ROAD_ID, SKY_ID, TinyMagentaModel, export_tiny_model

from ood_perception.backends.onnxruntime import OnnxRuntimeBackend
from ood_perception.core.frames import BgrFrame
from ood_perception.core.message_buffers import message_bytes
from ood_perception.core.pipeline import (
    ALL_OUTPUTS,
    GPU_STAGES,
    STAGES,
    Outputs,
    Pipeline,
    runs_on_gpu,
)
from ood_perception.core.postprocess import PostprocessConfig
from ood_perception.core.preprocess import make_batch
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
    tensor_path_outputs_match(pipeline, gpu_pipeline)


def bgr(frame: np.ndarray) -> BgrFrame:
    """The frame as a bgr8 camera would send it."""
    return BgrFrame(np.ascontiguousarray(frame[:, :, ::-1]))


def test_outputs_default_is_everything_at_frame_size(pipeline: Pipeline):
    [result] = pipeline.process([scene(120, 160, (40, 40, 40, 40))], ALL_OUTPUTS)
    assert result.anomaly_score.shape == result.semantic.shape == result.mask.shape == (120, 160)
    assert result.overlay is None and len(result.obstacles) == 1
    for array in (result.anomaly_score, result.semantic, result.mask):
        assert message_bytes(array) is not None  # message-ready: no copy to publish


def test_only_the_outputs_asked_for_are_made(pipeline: Pipeline):
    frame = scene(480, 640, (200, 100, 120, 90))
    [full] = pipeline.process([frame])
    model_size = Outputs(score="model", semantic=False)
    nothing = Outputs(score=None, semantic=False, obstacles=False)
    small, bare = pipeline.process([frame, frame], [model_size, nothing])
    assert small.anomaly_score.shape == pipeline.backend.info.input_size and small.semantic is None
    batch = make_batch([frame], pipeline.backend.info.input_size)
    np.testing.assert_array_equal(small.anomaly_score,
                                  pipeline.backend.run(batch).anomaly_score[0])
    np.testing.assert_array_equal(small.mask, full.mask)
    assert small.obstacles == full.obstacles
    assert bare.anomaly_score is None and bare.semantic is None and bare.mask is None
    assert bare.obstacles == [] and set(bare.timings) == set(STAGES)
    with pytest.raises(ConfigurationError, match="one per frame"):
        pipeline.process([frame, frame], [nothing])
    with pytest.raises(ConfigurationError, match="Outputs.score"):
        Outputs(score="half")
    with pytest.raises(ConfigurationError, match="overlay needs"):
        pipeline.overlay(frame, small)


def test_bgr_frames_give_the_same_results(pipeline: Pipeline):
    frames = [scene(480, 640, (200, 100, 120, 90)), scene(1080, 1920, (900, 400, 200, 160))]
    wanted = Outputs(overlay=True)
    for ours, theirs, frame in zip(pipeline.process([bgr(f) for f in frames], wanted),
                                   pipeline.process(frames, wanted), frames, strict=True):
        np.testing.assert_array_equal(ours.anomaly_score, theirs.anomaly_score)
        np.testing.assert_array_equal(ours.mask, theirs.mask)
        np.testing.assert_array_equal(ours.overlay, theirs.overlay)
        assert ours.obstacles == theirs.obstacles and len(ours.obstacles) == 1
        np.testing.assert_array_equal(ours.overlay, pipeline.overlay(frame, theirs))
        assert "overlay" in ours.timings


def tensor_path_outputs_match(host: Pipeline, tensor: Pipeline) -> None:
    """The tensor path against the host path for every kind of Outputs, with BGR frames and
    gating: the mask comes from thresholding and gating on the device."""
    frames = [scene(480, 640, (200, 300, 120, 90)), bgr(scene(720, 1280, (900, 400, 200, 160))),
              scene(64, 96, (10, 40, 20, 20)), scene(480, 640, (20, 20, 60, 60))]
    config = PostprocessConfig(score_threshold=0.5, min_obstacle_area=20,
                               gating_classes=(ROAD_ID,), gating_dilation=12)
    host.update_config(config)
    tensor.update_config(config)
    for wanted in [ALL_OUTPUTS, Outputs(score="model", semantic=False, overlay=True),
                   Outputs(score=None, semantic=True, obstacles=False)]:
        for a, b in zip(host.process(frames, wanted), tensor.process(frames, wanted),
                        strict=True):
            for name in ("anomaly_score", "semantic", "mask", "overlay"):
                ours, theirs = getattr(b, name), getattr(a, name)
                assert (ours is None) == (theirs is None), name
                if ours is not None:
                    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, name
            if wanted.score:
                assert np.abs(a.anomaly_score - b.anomaly_score).mean() < 0.01
            if wanted.semantic:
                assert (a.semantic == b.semantic).mean() > 0.999
            if wanted.obstacles:
                assert (a.mask == b.mask).mean() > 0.995
                assert len(a.obstacles) == len(b.obstacles)
                for mine, theirs in zip(b.obstacles, a.obstacles, strict=True):
                    assert np.abs(np.subtract(mine.bbox, theirs.bbox)).max() <= 3
    assert [len(r.obstacles) for r in tensor.process(frames)] == [1, 1, 1, 0]  # last: sky


def test_tensor_path_outputs_on_cpu_match_host_path(pipeline: Pipeline):
    tensor_path_outputs_match(
        pipeline, Pipeline(torch_tiny_backend(), pipeline.config, tensor_path=True))


@pytest.mark.parametrize("mode", ["letterbox", "crop"])
def test_resize_modes_put_a_4_3_frames_square_in_place(pipeline: Pipeline, mode: str):
    box = (200, 180, 120, 90)  # inside the crop's rows 26..453
    frame = scene(480, 640, box)
    frame[5:20, 500:560] = (255, 0, 255)  # a second square above the crop
    host = Pipeline(pipeline.backend, pipeline.config, resize_mode=mode)
    tensor = Pipeline(torch_tiny_backend(), pipeline.config, tensor_path=True,
                      resize_mode=mode)
    model = Outputs(score="model")
    for path in (host, tensor):
        [result] = path.process([frame])
        found = {o.bbox[1] < 100: o.bbox for o in result.obstacles}
        x, y, w, h = found[False]
        assert abs(x - 200) <= 8 and abs(y - 180) <= 8 and abs(w - 120) <= 12 and (
            abs(h - 90) <= 12)
        assert result.mask.shape == (480, 640) and result.semantic.shape == (480, 640)
        [small] = path.process([frame], model)
        if mode == "letterbox":  # the whole frame is scored, the padding dropped
            assert len(result.obstacles) == 2 and small.anomaly_score.shape == (64, 85)
        else:  # unseen rows: lowest score, no mask, no class
            assert True not in found and not result.mask[:26].any()
            assert (result.anomaly_score[:26] == 0.0).all() and (
                result.semantic[:26] == 255).all()
            assert small.anomaly_score.shape == (64, 96)
