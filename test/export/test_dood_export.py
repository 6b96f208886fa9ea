"""`ood-perception export` of DOoD models from official-layout checkpoint files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from dood_tiny import official_diff_state, randomize, write_checkpoint
from uem_tiny import official_segmentor_state

from ood_perception.cli.main import main
from ood_perception.models.dood.compound import DOoDStatistics, write_statistics
from ood_perception.models.dood.diffusion import DiffusionModel
from ood_perception.models.dood.network import DinoV2KeySegmentor
from ood_perception.models.dood.unet0d import UNet0DConfig
from ood_perception.models.uem.checkpoints import save_lightning_checkpoint
from ood_perception.models.uem.demo import demo_config


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random demo segmentor (UEM layout) and a small random diffusion model (official
    `*_diff.pth` layout) with statistics for 2 time steps."""
    folder = tmp_path_factory.mktemp("dood_export")
    cfg = demo_config()
    segmentor = randomize(DinoV2KeySegmentor(
        cfg.vit, (56, 112), cfg.layers, cfg.fpn_dim, cfg.dino_mlp_hidden, cfg.segmentor_head,
        cfg.num_classes, cfg.gmm_components), seed=1, scale=0.1)
    diffusion = randomize(DiffusionModel(UNet0DConfig(192, 32, levels=2, middle_blocks=1)),
                          seed=2)
    stats = DOoDStatistics(-8.0, 2.0, -1.0, 0.3, timesteps=2, weighting="official", images=25)
    return {
        "segmentor": save_lightning_checkpoint(official_segmentor_state(segmentor),
                                               folder / "seg.ckpt"),
        "diffusion": write_checkpoint(official_diff_state(diffusion), folder / "diff.pth"),
        "stats": write_statistics(stats, folder / "diff.stats.json"),
    }


def export(files: dict[str, Path], output: Path, *extra: str) -> list[str]:
    return ["export", "--model", "dood-demo", "--segmentor-checkpoint", str(files["segmentor"]),
            "--checkpoint", str(files["diffusion"]), "--input-size", "56x112", "--window",
            "56x112", "--output", str(output), *extra]


def test_export_writes_a_dood_graph_that_onnxruntime_agrees_with(demo_files, tmp_path: Path,
                                                                  capsys) -> None:
    out = tmp_path / "dood.onnx"
    code = main(export(demo_files, out, "--dood-stats", str(demo_files["stats"]),
                       "--timesteps", "2", "--exporter", "torchscript", "--save-torch"))
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "dood-demo, score compound" in printed
    diff = float(re.search(r"max \|score diff\| = (\S+)", printed).group(1))
    assert diff < 1e-3
    assert out.is_file() and out.with_suffix(".pt").is_file()
    payload = torch.load(out.with_suffix(".pt"), weights_only=True)
    assert payload["build"]["denoiser"]["model_channels"] == 32
    assert payload["build"]["dood_stats"]["diffusion_std"] == 0.3


@pytest.mark.parametrize(("extra", "message"), [
    (("--stats", "--timesteps", "5"), "measured with 2 time steps"),
    (("--stats", "--timesteps", "2", "--timestep-weighting", "eq8"), "and official weighting"),
    (("--timesteps", "2"), "needs in-distribution statistics"),
])
def test_statistics_must_fit_the_score(demo_files, tmp_path: Path, capsys, extra,
                                       message) -> None:
    extra = [a for flag in extra for a in (
        ("--dood-stats", str(demo_files["stats"])) if flag == "--stats" else (flag,))]
    assert main(export(demo_files, tmp_path / "x.onnx", *extra)) == 2
    assert message in capsys.readouterr().err


def test_dood_flags_are_refused_for_other_families(tmp_path: Path, capsys) -> None:
    code = main(["export", "--model", "uem-dinov2-s", "--random-init", "--timesteps", "5",
                 "--input-size", "56x112", "--output", str(tmp_path / "x.onnx")])
    assert code == 2
    assert "--timesteps apply only to dood-* models" in capsys.readouterr().err
