"""TorchBackend on a small random-init export agrees with the ONNX Runtime backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ood_perception.backends import create_backend
from ood_perception.cli import main
from ood_perception.errors import ConfigurationError


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("torch_backend") / "s.onnx"
    code = main(["export", "--model", "uem-dinov2-s", "--variant", "gg", "--random-init",
                 "--input-size", "42x56", "--single-window", "--window", "28x42",
                 "--output", str(out), "--save-torch", "--no-check"])
    assert code == 0
    return out


def frames(info, batch: int = 2) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(batch, *info.input_size, 3), dtype=np.uint8)


def test_torch_backend_matches_onnxruntime(exported: Path) -> None:
    torch_backend = create_backend("torch", str(exported.with_suffix(".pt")))
    ort_backend = create_backend("onnxruntime", str(exported))
    assert torch_backend.info == ort_backend.info
    images = frames(torch_backend.info)
    ours, theirs = torch_backend.run(images), ort_backend.run(images)
    assert ours.anomaly_score.shape == (2, 42, 56) and ours.anomaly_score.dtype == np.float32
    assert np.abs(ours.anomaly_score - theirs.anomaly_score).max() < 1e-3
    assert (ours.semantic == theirs.semantic).mean() > 0.999
    torch_backend.close()


def test_bf16_on_cpu_runs(exported: Path) -> None:
    backend = create_backend("torch", str(exported), precision="bf16")
    fp32 = create_backend("torch", str(exported))
    images = frames(backend.info, 1)
    out = backend.run(images)
    assert out.anomaly_score.dtype == np.float32 and np.isfinite(out.anomaly_score).all()
    ref = fp32.run(images).anomaly_score
    assert np.corrcoef(out.anomaly_score.ravel(), ref.ravel())[0, 1] > 0.9


def test_bad_options(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="precision"):
        create_backend("torch", str(exported), precision="int8")
    with pytest.raises(ConfigurationError, match="fp16"):
        create_backend("torch", str(exported), precision="fp16")
    with pytest.raises(ConfigurationError, match="not found"):
        create_backend("torch", str(tmp_path / "absent.pt"))
    backend = create_backend("torch", str(exported))
    with pytest.raises(ConfigurationError, match="uint8"):
        backend.run(np.zeros((1, 10, 10, 3), dtype=np.uint8))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda(exported: Path, precision: str) -> None:
    backend = create_backend("torch", str(exported), device="cuda", precision=precision)
    cpu = create_backend("torch", str(exported))
    images = frames(backend.info)
    out, ref = backend.run(images).anomaly_score, cpu.run(images).anomaly_score
    if precision == "fp32":
        assert np.abs(out - ref).max() < 1e-3
    else:
        assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.9
