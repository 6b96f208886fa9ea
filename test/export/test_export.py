"""Deploy wrapper, ONNX export (contract, metadata, dynamic batch) and the export CLI."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from uem_tiny import (
    WINDOW,
    official_segmentor_state,
    official_uem_state,
    randomize,
    tiny_config,
    tiny_network,
)

from ood_perception.cli.main import main
from ood_perception.contract import IMAGENET_MEAN_255, IMAGENET_STD_255, ModelInfo
from ood_perception.export.onnx import check_onnxruntime, export_onnx, sample_images
from ood_perception.models.deploy import DeployModel
from ood_perception.models.deploy_file import load_torch_deploy, save_torch_deploy
from ood_perception.models.registry import ExportRequest, build_model
from ood_perception.models.uem.build import build_uem
from ood_perception.models.uem.checkpoints import save_lightning_checkpoint
from ood_perception.models.uem.network import UEMNetwork, uem_config


class Probe(torch.nn.Module):
    """Returns channel 0 of its (normalised) input as the score, class 2 everywhere."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, 0], torch.full_like(x[:, 0], 2, dtype=torch.long)


def test_deploy_model_normalises_inside() -> None:
    deploy = DeployModel(Probe(), ModelInfo(input_height=4, input_width=5))
    image = torch.full((1, 4, 5, 3), 200, dtype=torch.uint8)
    score, semantic = deploy(image)
    expected = (200 - IMAGENET_MEAN_255[0]) / IMAGENET_STD_255[0]
    assert score.dtype == torch.float32 and semantic.dtype == torch.uint8
    assert torch.allclose(score, torch.full((1, 4, 5), expected))
    assert (semantic == 2).all()


@pytest.fixture(scope="module")
def tiny_deploy() -> DeployModel:
    """GMM heads, 6 windows run 2 at a time (an ONNX Scan over 3 chunks)."""
    deploy = build_uem(ExportRequest(model="uem-tiny", random_init=True, input_size=(70, 112),
                                     window=WINDOW, stride=14, window_chunk=2),
                       tiny_config("gg"))
    net = tiny_network("gg", seed=4)
    deploy.network.coverage.network.load_state_dict(net.state_dict())
    return deploy.eval()


def test_onnx_matches_torch_with_dynamic_batch(tmp_path: Path, tiny_deploy) -> None:
    path = export_onnx(tiny_deploy, tmp_path / "tiny.onnx", opset=18)
    model = onnx.load(str(path))
    assert model.doc_string == "exported with the dynamo exporter"
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["anomaly_score", "semantic"]
    props = {p.key: p.value for p in model.metadata_props}
    info = ModelInfo.from_metadata(props, (70, 112))
    assert info == tiny_deploy.info
    assert info.tiling["windows"] == len(tiny_deploy.network.coverage.windows)
    assert info.tiling["chunk"] == 2
    # The network is in the graph once, inside a Scan over the chunks.
    assert [node.op_type for node in model.graph.node].count("Scan") == 1
    assert not any(node.op_type == "Conv" for node in model.graph.node)
    images = sample_images(tiny_deploy.info, batch=3, seed=7)
    assert check_onnxruntime(path, tiny_deploy, images) < 1e-3
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    score, semantic = session.run(None, {"image": images[:1]})
    assert score.shape == (1, 70, 112) and score.dtype == np.float32
    assert semantic.dtype == np.uint8
    with torch.no_grad():
        expected = tiny_deploy(torch.from_numpy(images[:1]))[1].numpy()
    assert (semantic == expected).mean() > 0.999


def test_torchscript_exporter_also_matches(tmp_path: Path, tiny_deploy) -> None:
    path = export_onnx(tiny_deploy, tmp_path / "ts.onnx", opset=17, exporter="torchscript")
    assert onnx.load(str(path)).doc_string == "exported with the torchscript exporter"
    images = sample_images(tiny_deploy.info, batch=3, seed=8)
    assert check_onnxruntime(path, tiny_deploy, images) < 1e-3


def test_torch_deploy_round_trip(tmp_path: Path) -> None:
    request = ExportRequest(model="uem-dinov2-s", variant="gd", random_init=True,
                            input_size=(42, 56), window=(28, 42), stride=14, seed=3)
    deploy = build_model(request)
    path = save_torch_deploy(deploy, request, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "ood_perception.deploy/1"
    assert payload["metadata"] == deploy.info.to_metadata()
    loaded = load_torch_deploy(path)
    image = torch.from_numpy(sample_images(deploy.info, batch=1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(image)[0], deploy(image)[0])


@pytest.mark.parametrize("argv,message", [
    (["--model", "uno-m2f-swin-l", "--random-init"], "--window do not apply to Mask2Former"),
    (["--model", "uno-m2f-swin-l", "--random-init", "--segmentor-checkpoint", "s.ckpt"],
     "--segmentor-checkpoint"),
    (["--model", "uem-dinov2-b", "--random-init", "--checkpoint", "x.ckpt"], "exactly one"),
    (["--model", "uem-dinov2-b", "--checkpoint", "absent.ckpt"], "not found"),
    (["--model", "uem-nope", "--random-init"], "uem-dinov2-b"),
    (["--model", "uem-dinov2-b", "--variant", "xx", "--random-init"], "variant"),
    (["--model", "uem-dinov2-b", "--random-init", "--score", "entropy"], "score"),
    (["--model", "uno-m2f-swin-l", "--random-init", "--window-chunk", "3"],
     "--window-chunk apply only to uem-* models"),
    (["--model", "uem-dinov2-s", "--random-init", "--window-chunk", "0"],
     "--window-chunk must be positive"),
    (["--model", "uem-dinov2-s", "--random-init", "--window-chunk", "2"],
     "window chunk must divide the 1 windows of a 28x42 input: one of 1; got 2"),
    (["--model", "uem-dinov2-s", "--random-init", "--no-test-resize"],
     "--test-resize apply to Mask2Former"),
])
def test_cli_errors(tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    code = main(["export", *argv, "--input-size", "28x42", "--window", "28x42",
                 "--output", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "\n" not in err.strip()


def test_cli_refuses_an_output_it_cannot_write_before_building(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("")
    for output, message in ((tmp_path / "file" / "m.onnx", "not a writable folder"),
                            (tmp_path, "exists and is not a file")):
        code = main(["export", "--model", "uem-dinov2-s", "--random-init", "--input-size",
                     "28x42", "--window", "28x42", "--output", str(output)])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "\n" not in err.strip()


def test_cli_rejects_an_unknown_mask2former_head(tmp_path: Path, capsys) -> None:
    code = main(["export", "--model", "uno-m2f-swin-t", "--variant", "dd", "--random-init",
                 "--input-size", "64x64", "--output", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "variant must be one of" in err and "\n" not in err.strip()


def test_cli_export_small_vit_s(tmp_path: Path, capsys) -> None:
    out = tmp_path / "s.onnx"
    code = main(["export", "--model", "uem-dinov2-s", "--variant", "dd", "--random-init",
                 "--input-size", "42x70", "--window", "28x42", "--stride", "14",
                 "--score", "max_logit", "--output", str(out), "--save-torch"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert out.is_file() and out.with_suffix(".pt").is_file()
    diff = float(re.search(r"max \|score diff\| = (\S+)", text).group(1))
    assert diff < 1e-3


def test_cli_export_from_a_drifted_official_pair(tmp_path: Path, capsys, caplog) -> None:
    """A UEM .ckpt whose `segmentor.*` batch-norm statistics drifted from its segmentor .ckpt
    (official UEM training leaves the frozen segmentor in train mode): export scores with the
    UEM file's weights, as the official evaluation does, and says that the files differ."""
    segmentor = randomize(UEMNetwork(uem_config("s", "gd"), (28, 42)), seed=5).segmentor
    network = randomize(UEMNetwork(uem_config("s", "gd"), (28, 42)), seed=5)
    with torch.no_grad():
        for name, tensor in network.segmentor.state_dict().items():
            if name.endswith("running_var"):
                tensor.mul_(2.0)
    ckpt = save_lightning_checkpoint(official_uem_state(network), tmp_path / "uem.ckpt")
    seg = save_lightning_checkpoint(official_segmentor_state(segmentor), tmp_path / "seg.ckpt")
    out = tmp_path / "s.onnx"
    code = main(["export", "--model", "uem-dinov2-s", "--variant", "gd", "--checkpoint",
                 str(ckpt), "--segmentor-checkpoint", str(seg), "--input-size", "28x42",
                 "--window", "28x42", "--output", str(out), "--save-torch"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert float(re.search(r"max \|score diff\| = (\S+)", text).group(1)) < 1e-3
    assert "differ in 8 of " in caplog.text  # the 8 batch norms' running_var
    loaded = load_torch_deploy(out.with_suffix(".pt")).network.coverage.network
    torch.testing.assert_close(loaded.state_dict(), network.state_dict())


@pytest.mark.slow
def test_cli_export_full_vit_b(tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.onnx"
    code = main(["export", "--model", "uem-dinov2-b", "--variant", "dd", "--random-init",
                 "--input-size", "518x1036", "--output", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    diff = float(re.search(r"max \|score diff\| = (\S+)", text).group(1))
    assert diff < 1e-3
    props = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert props["model_name"] == "uem-dinov2-b-dd" and props["score_name"] == "llr"
