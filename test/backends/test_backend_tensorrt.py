"""TensorRT backend: cache keys everywhere; engine build and parity only where TensorRT runs."""

import json
from dataclasses import asdict, replace
from types import SimpleNamespace

import numpy as np
import pytest

from ood_perception.backends import create_backend
from ood_perception.backends.tensorrt import (
    EngineKey,
    cached_engine_status,
    configure_precision,
    engine_path_for,
    timing_cache_path_for,
    write_atomically,
)
from ood_perception.cli import main as cli
from ood_perception.errors import ConfigurationError

try:
    import tensorrt  # noqa: F401

    HAVE_TENSORRT = True
except ImportError:
    HAVE_TENSORRT = False

KEY = EngineKey(
    onnx_sha256="ab" * 32, tensorrt_version="10.3.0", gpu_name="NVIDIA H100",
    compute_capability="9.0", precision="fp16", max_batch=2,
)


def _write_cached(onnx_path, key):
    engine = engine_path_for(onnx_path, key.precision)
    engine.write_bytes(b"engine")
    engine.with_name(engine.name + ".json").write_text(json.dumps(asdict(key)))


def test_engine_path_sits_beside_the_onnx(tmp_path):
    assert engine_path_for(tmp_path / "m.onnx", "fp16") == tmp_path / "m.fp16.engine"


def test_cache_missing_matching_and_stale(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    usable, reason = cached_engine_status(onnx_path, KEY)
    assert not usable and "no cached engine" in reason
    _write_cached(onnx_path, KEY)
    assert cached_engine_status(onnx_path, KEY)[0]
    newer = replace(KEY, tensorrt_version="10.5.0", gpu_name="Orin")
    usable, reason = cached_engine_status(onnx_path, newer)
    assert not usable
    assert "tensorrt_version '10.3.0' -> '10.5.0'" in reason and "gpu_name" in reason
    assert "precision" not in reason


def test_engines_built_with_older_builder_settings_are_rebuilt(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    _write_cached(onnx_path, KEY)
    key_path = engine_path_for(onnx_path, "fp16").with_suffix(".engine.json")
    old = {k: v for k, v in asdict(KEY).items() if k != "builder_settings"}
    key_path.write_text(json.dumps(old))
    usable, reason = cached_engine_status(onnx_path, KEY)
    assert not usable and f"builder_settings 1 -> {KEY.builder_settings}" in reason


def test_unreadable_key_file_means_rebuild(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    _write_cached(onnx_path, KEY)
    engine_path_for(onnx_path, "fp16").with_suffix(".engine.json").write_text("{bad")
    assert not cached_engine_status(onnx_path, KEY)[0]


def test_timing_cache_is_per_tensorrt_version_and_gpu_architecture(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    assert timing_cache_path_for(onnx_path, KEY) == tmp_path / "m.trt10.3.0.sm90.timing_cache"
    orin = replace(KEY, gpu_name="Orin", compute_capability="8.7")
    assert timing_cache_path_for(onnx_path, orin) != timing_cache_path_for(onnx_path, KEY)


def test_write_atomically_replaces_the_file_and_leaves_no_partial(tmp_path):
    path = tmp_path / "m.fp16.engine"
    path.write_bytes(b"old")
    write_atomically(path, b"new engine")
    assert path.read_bytes() == b"new engine"
    assert [p.name for p in tmp_path.iterdir()] == ["m.fp16.engine"]


class RecordingConfig:
    """The two BuilderConfig calls `configure_precision` makes, recorded."""

    def __init__(self):
        self.flags = {"TF32"}

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)


def test_fp32_engines_turn_tf32_off():
    """TensorRT enables TF32 by default; fp32 must mean FP32 for the parity tolerance."""
    trt = SimpleNamespace(__version__="10.3.0", BuilderFlag=SimpleNamespace(
        FP16="FP16", TF32="TF32", PREFER_PRECISION_CONSTRAINTS="PREFER"))
    config = RecordingConfig()
    configure_precision(trt, config, network=None, precision="fp32")
    assert config.flags == set()


def test_fp16_on_tensorrt_11_is_one_clear_configuration_error():
    """TensorRT 11 removed BuilderFlag.FP16 and per-layer precisions (strong typing only)."""
    trt = SimpleNamespace(__version__="11.0.0", BuilderFlag=SimpleNamespace(TF32="TF32"))
    with pytest.raises(ConfigurationError, match="use --precision fp32, or TensorRT 10"):
        configure_precision(trt, RecordingConfig(), network=None, precision="fp16")


@pytest.mark.skipif(HAVE_TENSORRT, reason="checks the message shown where TensorRT is missing")
def test_missing_tensorrt_is_one_clear_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="TensorRT >= 10 Python package"):
        create_backend("tensorrt", str(tmp_path / "m.onnx"))


@pytest.mark.skipif(HAVE_TENSORRT, reason="checks the message shown where TensorRT is missing")
def test_build_engine_command_fails_cleanly_without_tensorrt(tmp_path, capsys):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"not used")
    assert cli.main(["build-engine", str(onnx_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TENSORRT, reason="TensorRT is not installed on this machine")
def test_engine_matches_onnxruntime(tiny_model_path, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    onnx_path = tmp_path / "tiny.onnx"
    onnx_path.write_bytes(open(tiny_model_path, "rb").read())
    reference = create_backend("onnxruntime", str(onnx_path))
    engine = create_backend("tensorrt", str(onnx_path), precision="fp32", max_batch=2)
    height, width = reference.info.input_size
    images = np.random.default_rng(0).integers(0, 255, (2, height, width, 3), dtype=np.uint8)
    expected, actual = reference.run(images), engine.run(images)
    np.testing.assert_allclose(actual.anomaly_score, expected.anomaly_score, atol=1e-3)
    rebuilt_reason = cached_engine_status(onnx_path, replace(KEY, precision="fp32"))[1]
    assert "stale" in rebuilt_reason
