"""TorchBackend on a small random-init export agrees with the ONNX Runtime backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ood_perception.backends import create_backend
from ood_perception.cli.main import main
from ood_perception.errors import ConfigurationError


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("torch_backend") / "s.onnx"
    # DD heads: well conditioned, so fp32 on CUDA must match the CPU to 1e-3 (test_parity
    # explains why the GMM heads get a looser fp32 bound).
    code = main(["export", "--model", "uem-dinov2-s", "--variant", "dd", "--random-init",
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


@pytest.fixture(scope="module")
def gg_model():
    from ood_perception.models.registry import ExportRequest, build_model

    return build_model(ExportRequest(model="uem-dinov2-s", variant="gg", random_init=True,
                                     input_size=(42, 56), window=(28, 42),
                                     single_window=True))


def test_model_in_memory_and_tensor_input(gg_model) -> None:
    backend = create_backend("torch", gg_model)
    images = frames(backend.info)
    from_numpy = backend.run(images)
    score, semantic = backend.run_torch(torch.from_numpy(images))
    assert score.dtype == torch.float32 and semantic.dtype == torch.uint8
    assert score.shape == semantic.shape == (2, 42, 56)
    np.testing.assert_array_equal(score.numpy(), from_numpy.anomaly_score)
    with torch.no_grad():
        expected, _ = gg_model(torch.from_numpy(images))
    np.testing.assert_array_equal(score.numpy(), expected.numpy())
    assert not backend.cuda_graphs  # CPU: eager
    with pytest.raises(ConfigurationError, match="uint8"):
        backend.run_torch(torch.zeros((1, 42, 56, 3), dtype=torch.float32))
    with pytest.raises(ConfigurationError, match="numpy array or torch tensor"):
        backend.run([[0]])


def _tiny_gmm_deploy(variant: str, diagonal: float):
    """A tiny UEM with GMM heads whose diagonals lie in [diagonal, 2 * diagonal]."""
    from uem_tiny import WINDOW, tiny_config, tiny_network

    from ood_perception.models.registry import ExportRequest
    from ood_perception.models.uem.build import build_uem

    deploy = build_uem(ExportRequest(model="uem-tiny", random_init=True, input_size=(70, 112),
                                     window=WINDOW, stride=14), tiny_config(variant))
    network = tiny_network(variant, seed=3)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            if name.endswith("diagonal"):
                tensor.copy_((torch.rand(tensor.shape, generator=generator) + 1) * diagonal)
    deploy.network.coverage.network.load_state_dict(network.state_dict())
    return deploy.eval()


@pytest.mark.parametrize("variant", ["gd", "gg"])
@pytest.mark.parametrize("diagonal", [0.5, 0.05])
def test_gmm_heads_keep_the_fp16_tolerance_without_pinning(variant: str, diagonal: float):
    """The backend's fp16 autocast on CPU against fp32, tiled windows: within parity's fp16
    tolerance with no module kept in fp32 (the heads' own LayerNorm output is fp32 under
    autocast, and nothing after it is a matmul)."""
    from ood_perception.backends.torch import precision_context
    from ood_perception.core.parity import TOLERANCES, compare

    deploy = _tiny_gmm_deploy(variant, diagonal)
    images = torch.from_numpy(frames(deploy.info))
    seen = []
    for module in deploy.modules():
        if type(module).__name__ == "GMMSegHead":
            module.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    with torch.no_grad():
        reference, classes = deploy(images)
        with precision_context(torch.device("cpu"), "fp16"):
            score, fp16_classes = deploy(images)
    agreement = compare(reference.numpy(), score.float().numpy(), classes.numpy(),
                        fp16_classes.numpy())
    assert agreement.failures(TOLERANCES["fp16"]) == []
    assert seen[-1] == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphs_per_batch_size(gg_model) -> None:
    graphed = create_backend("torch", gg_model, device="cuda", precision="fp16")
    eager = create_backend("torch", gg_model, device="cuda", precision="fp16",
                           cuda_graphs=False)
    assert graphed.cuda_graphs and not eager.cuda_graphs
    two, one = frames(graphed.info, 2), frames(graphed.info, 1)[:, ::-1].copy()
    first = graphed.run_torch(two)[0]
    kept = first.clone()
    graphed.run_torch(one)
    again = graphed.run_torch(two)[0]
    assert len(graphed._graphs.captured_shapes) == 2 and graphed.graphs_captured
    torch.testing.assert_close(first, kept)  # not overwritten by later replays
    torch.testing.assert_close(again, first)
    torch.testing.assert_close(first, eager.run_torch(two)[0], atol=1e-3, rtol=1e-3)
    from_gpu_tensor = graphed.run_torch(torch.from_numpy(two).cuda())[0]
    torch.testing.assert_close(from_gpu_tensor, first)


def test_graphs_for_every_batch_up_to_the_cameras_are_planned_at_start_up(gg_model) -> None:
    from ood_perception.backends.torch import graph_batch_sizes

    assert graph_batch_sizes(3) == [1, 2, 3]
    with pytest.raises(ConfigurationError, match="max batch must be an integer >= 1"):
        graph_batch_sizes(0)
    backend = create_backend("torch", gg_model, max_batch=2)
    assert backend.graph_batches == [1, 2] and not backend.cuda_graphs  # CPU: eager


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphs_are_captured_at_start_up_not_in_a_live_frame(gg_model) -> None:
    backend = create_backend("torch", gg_model, device="cuda", precision="fp16", max_batch=3)
    height, width = backend.info.input_size
    assert sorted(shape[0][0] for shape in backend._graphs.captured_shapes) == [1, 2, 3]
    backend.run_torch(frames(backend.info, 2))
    backend.run_torch(frames(backend.info, 4))  # beyond the cameras: eager, no capture
    assert len(backend._graphs.captured_shapes) == 3
    assert backend._graphs.captured_shapes[0][0] == (1, height, width, 3)
