"""OnnxRuntimeBackend: contract checks, metadata, fixed-batch splitting, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from tiny_model import ROAD_ID, SKY_ID, export_tiny_model

from ood_perception.backends import create_backend
from ood_perception.backends.onnxruntime import OnnxRuntimeBackend, choose_providers
from ood_perception.errors import ConfigurationError


def magenta_batch(count: int, size: tuple[int, int] = (64, 96)) -> np.ndarray:
    images = np.full((count, *size, 3), 128, np.uint8)
    for index in range(count):
        images[index, 10 + index:30 + index, 20:50] = (255, 0, 255)
    return images


def test_runs_tiny_model_and_reads_metadata(tiny_model_path: Path):
    backend = create_backend("onnxruntime", str(tiny_model_path))
    assert isinstance(backend, OnnxRuntimeBackend)
    assert backend.name == "onnxruntime" and backend.device == "cpu"
    assert backend.info.input_size == (64, 96)
    assert backend.info.model_name == "tiny_magenta"
    assert backend.info.score_range == (0.0, 1.0)
    assert backend.fixed_batch is None
    output = backend.run(magenta_batch(3))
    assert output.anomaly_score.shape == (3, 64, 96)
    assert output.anomaly_score.dtype == np.float32 and output.semantic.dtype == np.uint8
    assert output.anomaly_score[0, 20, 35] == pytest.approx(1.0)
    assert output.anomaly_score[0, 50, 80] == pytest.approx(0.0)
    assert output.anomaly_score[2, 9, 35] == pytest.approx(0.0)  # square moved down
    assert output.semantic[0, 0, 0] == SKY_ID and output.semantic[0, 63, 0] == ROAD_ID
    backend.close()


def test_fixed_batch_is_split_and_padded(tmp_path: Path):
    path = export_tiny_model(tmp_path / "fixed.onnx", fixed_batch=2, with_semantic=False)
    backend = OnnxRuntimeBackend(path)
    assert backend.fixed_batch == 2
    images = magenta_batch(5)
    output = backend.run(images)
    assert output.semantic is None and output.anomaly_score.shape == (5, 64, 96)
    for index in range(5):
        assert output.anomaly_score[index, 20 + index, 35] == pytest.approx(1.0)
        assert output.anomaly_score[index, 7 + index, 35] == pytest.approx(0.0)


def test_metadata_absent_falls_back_to_input_shape(tmp_path: Path):
    path = export_tiny_model(tmp_path / "plain.onnx", input_size=(32, 48), with_metadata=False)
    backend = OnnxRuntimeBackend(path)
    assert backend.info.input_size == (32, 48)
    assert backend.info.model_name == "unknown" and backend.info.score_range is None


def test_wrong_input_size_is_refused(tiny_model_path: Path):
    backend = OnnxRuntimeBackend(tiny_model_path)
    with pytest.raises(ConfigurationError, match="uint8"):
        backend.run(np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(ConfigurationError):
        backend.run(np.zeros((1, 64, 96, 3), np.float32))


def test_missing_file(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="not found"):
        OnnxRuntimeBackend(tmp_path / "nope.onnx")


def test_not_onnx(tmp_path: Path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"this is not a protobuf")
    with pytest.raises(ConfigurationError, match="not a loadable ONNX model") as caught:
        OnnxRuntimeBackend(path)
    assert "\n" not in str(caught.value)


class FloatInput(torch.nn.Module):
    def forward(self, image):
        return image.mean(dim=-1)


@pytest.mark.parametrize(
    ("input_name", "output_name", "dtype", "match"),
    [("image", "anomaly_score", torch.float32, "uint8"),
     ("pixels", "anomaly_score", torch.uint8, "one input 'image'"),
     ("image", "score", torch.uint8, "float32 output 'anomaly_score'")],
)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_not_a_contract_graph(tmp_path: Path, input_name, output_name, dtype, match):
    path = tmp_path / "bad.onnx"
    model = FloatInput() if dtype == torch.float32 else _MeanOfUint8()
    torch.onnx.export(model, (torch.zeros((1, 8, 8, 3), dtype=dtype),), str(path),
                      input_names=[input_name], output_names=[output_name], dynamo=False)
    onnx.checker.check_model(str(path))
    with pytest.raises(ConfigurationError, match=match):
        OnnxRuntimeBackend(path)


class _MeanOfUint8(torch.nn.Module):
    def forward(self, image):
        return image.float().mean(dim=-1)


def test_device_choice():
    available = ["CPUExecutionProvider"]
    assert choose_providers("cpu", None, available) == (["CPUExecutionProvider"], "cpu")
    with pytest.raises(ConfigurationError, match="onnxruntime-gpu"):
        choose_providers("cuda", None, available)
    with pytest.raises(ConfigurationError, match="device must be cpu, cuda or cuda:N"):
        choose_providers("tpu", None, available)
    with pytest.raises(ConfigurationError, match="not offered"):
        choose_providers("cpu", ["TensorrtExecutionProvider"], available)
    providers, label = choose_providers(
        "cuda:1", None, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert label == "cuda:1"
    assert providers == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]


def test_intra_op_threads_do_not_spin_unless_asked(tiny_model_path: Path):
    key = "session.intra_op.allow_spinning"
    for options, expected in [({}, "0"), ({"spin_wait": True}, "1")]:
        backend = OnnxRuntimeBackend(tiny_model_path, **options)
        assert backend._session.get_session_options().get_session_config_entry(key) == expected
        assert backend.run(magenta_batch(1)).anomaly_score.shape == (1, 64, 96)
        backend.close()


def test_bad_options(tiny_model_path: Path):
    with pytest.raises(ConfigurationError, match="intra_op_threads"):
        OnnxRuntimeBackend(tiny_model_path, intra_op_threads=-1)
    with pytest.raises(ConfigurationError, match="onnxruntime-gpu"):
        OnnxRuntimeBackend(tiny_model_path, device="cuda")


class _Int32Semantic(torch.nn.Module):
    def forward(self, image):
        return image.float().mean(dim=-1), image[..., 0].to(torch.int32)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_int32_semantic_is_cast_to_uint8(tmp_path: Path):
    path = tmp_path / "int32.onnx"
    torch.onnx.export(_Int32Semantic(), (torch.zeros((1, 8, 8, 3), dtype=torch.uint8),),
                      str(path), input_names=["image"],
                      output_names=["anomaly_score", "semantic"], dynamo=False)
    backend = OnnxRuntimeBackend(path)
    images = np.full((1, 8, 8, 3), 7, np.uint8)
    output = backend.run(images)
    assert output.semantic.dtype == np.uint8 and (output.semantic == 7).all()
