"""DOoD deploy models: official-layout files load strictly, the compound score is the
documented formula, graphs export to ONNX and the `.pt` deploy file rebuilds them."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
import torch.nn.functional as F
from dood_tiny import (
    TINY_DENOISER,
    official_diff_state,
    official_segm_state,
    randomize,
    tiny_segmenter,
    write_checkpoint,
)

from ood_perception.contract import ModelInfo
from ood_perception.errors import CheckpointError, ConfigurationError
from ood_perception.export.onnx import check_onnxruntime, export_onnx, sample_images
from ood_perception.models.deploy_file import load_torch_deploy, save_torch_deploy
from ood_perception.models.dood.build import build_mmseg_dood
from ood_perception.models.dood.compound import DOoDStatistics, logsumexp_score
from ood_perception.models.dood.diffusion import DiffusionModel
from ood_perception.models.registry import ExportRequest, build_model

SIZE = (72, 100)
# A small denoiser on the demo's 192-wide keys keeps the export fast.
SMALL_DENOISER = {"in_channels": 192, "model_channels": 32, "levels": 1, "middle_blocks": 0}
STATS = DOoDStatistics(-6.0, 2.0, -1.5, 0.25, timesteps=3, weighting="official", images=25)


@pytest.fixture(scope="module")
def official_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("dood_official")
    segmentor = randomize(tiny_segmenter(SIZE), seed=1)
    diffusion = randomize(DiffusionModel(TINY_DENOISER), seed=2)
    return (write_checkpoint(official_segm_state(segmentor), folder / "tiny_segm.pth"),
            write_checkpoint(official_diff_state(diffusion), folder / "tiny_diff.pth"))


def tiny(files: tuple[Path, Path], **fields) -> torch.nn.Module:
    fields = {"timesteps": 3, "dood_stats": STATS.to_dict(), **fields}
    request = ExportRequest(model="dood-tiny", segmentor_checkpoint=str(files[0]),
                            checkpoint=str(files[1]), input_size=SIZE, **fields)
    return build_mmseg_dood(request, tiny_segmenter, TINY_DENOISER, ("a", "b", "c", "d", "e"))


def test_compound_score_is_the_standardised_sum_on_official_layout_files(official_files
                                                                         ) -> None:
    deploy = tiny(official_files)
    image = torch.from_numpy(sample_images(deploy.info, batch=2, seed=3))
    network = deploy.network.coverage.network
    with torch.no_grad():
        score, classes = deploy(image)
        x = (image.permute(0, 3, 1, 2).float() - deploy.mean) * deploy.inv_std
        logits, keys = network.segmentor(x)
        energy = network.diffusion_score(network.diffusion, keys).reshape(2, 1, *network
                                                                         .segmentor.grid)
    logits = F.interpolate(logits, size=SIZE, mode="bilinear", align_corners=False)
    energy = F.interpolate(energy, size=SIZE, mode="nearest")[:, 0]
    expected = ((logsumexp_score(logits) + 6.0) / 2.0 + (energy + 1.5) / 0.25)
    torch.testing.assert_close(score, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(classes, logits.argmax(1).to(torch.uint8))
    # E keeps one value per 5x7 grid cell (nearest), the logits do not.
    assert energy[0].unique().numel() <= 35 < logits[0, 0].unique().numel()
    info = deploy.info
    assert info.score_name == "compound" and info.tiling == {"mode": "whole"}
    assert info.score_params["diffusion"]["timesteps"] == 3
    assert info.score_params["statistics"]["diffusion_std"] == 0.25


def test_the_parts_alone_need_no_statistics(official_files) -> None:
    image = torch.from_numpy(sample_images(ModelInfo(*SIZE), batch=1, seed=4))
    with torch.no_grad():
        compound = tiny(official_files)(image)[0]
        energy = tiny(official_files, score="diffusion", dood_stats=None)(image)[0]
        lse = tiny(official_files, score="logsumexp", dood_stats=None)(image)[0]
    torch.testing.assert_close(compound, (lse + 6.0) / 2.0 + (energy + 1.5) / 0.25, atol=1e-5,
                               rtol=1e-5)


def test_requests_that_cannot_work_fail_with_what_to_do(official_files) -> None:
    with pytest.raises(ConfigurationError, match="dood-stats"):
        tiny(official_files, dood_stats=None)
    with pytest.raises(ConfigurationError, match="measured with 3 time steps"):
        tiny(official_files, timesteps=5)
    with pytest.raises(ConfigurationError, match="whole image"):
        tiny(official_files, single_window=True)
    with pytest.raises(ConfigurationError, match="--segmentor-checkpoint"):
        build_model(ExportRequest(model="dood-segmenter-b", checkpoint=str(official_files[1])))
    # A diffusion checkpoint where the segmentor belongs: strict loading names the keys.
    with pytest.raises(CheckpointError, match="unexpected keys"):
        tiny((official_files[1], official_files[1]))


def test_demo_exports_with_onnxruntime_parity_and_rebuilds_from_the_pt(tmp_path: Path) -> None:
    """TorchScript exporter: the dynamo one takes minutes on the CI machine (the CLI's auto
    mode uses dynamo; docs/dood.md shows it on the full-size models)."""
    request = ExportRequest(model="dood-demo", random_init=True, input_size=(56, 112),
                            window=(56, 112), timesteps=2, denoiser=SMALL_DENOISER,
                            dood_stats={**STATS.to_dict(), "timesteps": 2})
    deploy = build_model(request)
    path = export_onnx(deploy, tmp_path / "dood_demo.onnx", exporter="torchscript")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    info = ModelInfo.from_metadata(props, (56, 112))
    assert info == deploy.info and info.score_params["statistics"]["images"] == 25
    images = sample_images(deploy.info, batch=2, seed=5)
    with torch.no_grad():
        scores = deploy(torch.from_numpy(images))[0]
    assert torch.isfinite(scores).all() and scores.std() > 0.1
    assert check_onnxruntime(path, deploy, images) < 1e-4 * float(scores.abs().max())
    rebuilt = load_torch_deploy(save_torch_deploy(deploy, request, tmp_path / "dood_demo.pt"))
    with torch.no_grad():
        assert torch.equal(rebuilt(torch.from_numpy(images))[0], scores)
    assert rebuilt.info == deploy.info
