"""TensorRT backend: clear errors where TensorRT is missing; engine parity only where it runs
(keys, cache and bindings: test_tensorrt_cache.py, test_tensorrt_engine.py)."""

import numpy as np
import pytest

from ood_perception.backends import create_backend
from ood_perception.cli import main as cli
from ood_perception.errors import ConfigurationError

try:
    import tensorrt  # noqa: F401

    HAVE_TENSORRT = True
except ImportError:
    HAVE_TENSORRT = False


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
    np.testing.assert_array_equal(actual.semantic, expected.semantic)
    three = np.concatenate([images, images[:1]])  # two chunks: 2 frames, then 1
    np.testing.assert_allclose(engine.run(three).anomaly_score,
                               reference.run(three).anomaly_score, atol=1e-3)
