"""DOoD training: features, the denoiser's objective, the statistics and the commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from dood_tiny import TINY_DENOISER, randomize, tiny_segmenter

from ood_perception.cli.main import main
from ood_perception.models.dood.build import build_mmseg_dood
from ood_perception.models.dood.compound import logsumexp_score, read_statistics
from ood_perception.models.dood.diffusion import DiffusionModel
from ood_perception.models.dood.unet0d import UNet0DConfig
from ood_perception.models.registry import ExportRequest
from ood_perception.models.uem.checkpoints import load_state_dict
from ood_perception.training.dood import (
    FeatureBank,
    collect_features,
    measure_statistics,
    train_denoiser,
)
from ood_perception.training.uem import OptimConfig

SIZE = (64, 96)  # a 4x6 patch grid


def tiny_deploy(seed: int = 0) -> torch.nn.Module:
    deploy = build_mmseg_dood(ExportRequest(model="dood-tiny", random_init=True, input_size=SIZE,
                                            timesteps=2, score="diffusion"),
                              tiny_segmenter, TINY_DENOISER, ())
    randomize(deploy.network.coverage.network.segmentor, seed)
    return deploy


def samples(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random images whose top 32 rows (two patch rows) are labelled void."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        label = np.zeros(SIZE, np.uint8)
        label[:32] = 255
        out.append((rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8), label))
    return out


def test_features_leave_out_void_cells() -> None:
    network = tiny_deploy().network.coverage.network
    bank = collect_features(network, samples(3), SIZE, count=3, seed=0, progress=False)
    assert bank.features.shape == (3 * 2 * 6, 64) and bank.images == 3


def test_denoiser_learns_the_noise_of_normalised_features() -> None:
    """Epsilon MSE starts at 1 (the official init predicts zero) and falls; the features are
    normalised to [-1, 1] with their min/max first."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 128, generator=generator) * 3
    inliers = centres[torch.randint(4, (4000,), generator=generator)]
    inliers = inliers + 0.05 * torch.randn(4000, 128, generator=generator)
    torch.manual_seed(0)
    # GroupNorm(32) needs several channels per group: 128 gives 4.
    diffusion = DiffusionModel(UNet0DConfig(128, 128, levels=1, middle_blocks=0))
    result = train_denoiser(diffusion, FeatureBank(inliers, 1),
                            OptimConfig(steps=150, batch_size=128, lr=3e-3, weight_decay=0.0,
                                        warmup=10), progress=False)
    assert result.losses[0] == pytest.approx(1.0, abs=0.15)
    assert np.mean(result.losses[-30:]) < 0.8 * np.mean(result.losses[:30])
    normalised = diffusion.normalization(inliers)
    assert float(normalised.abs().amax()) == pytest.approx(1.0)
    assert float(normalised.amin(0).amin()) == pytest.approx(-1.0, abs=1e-5) or float(
        normalised.amax(0).amax()) == pytest.approx(1.0, abs=1e-5)


def test_statistics_are_means_and_stds_over_the_maps() -> None:
    deploy = tiny_deploy(seed=1)
    data = samples(3)
    stats = measure_statistics(deploy, data, count=3, progress=False)
    s_values, e_values = [], []
    with torch.no_grad():
        for rgb, label in data:
            seg, energy = deploy.network.coverage(
                (torch.from_numpy(rgb[None]).permute(0, 3, 1, 2).float() - deploy.mean)
                * deploy.inv_std)
            s_values.append(logsumexp_score(seg).flatten())
            e_values.append(energy[0, 0][torch.from_numpy(label != 255)])
    s, e = torch.cat(s_values).double(), torch.cat(e_values).double()
    assert stats.logsumexp_mean == pytest.approx(float(s.mean()), rel=1e-6)
    assert stats.logsumexp_std == pytest.approx(float(s.std()), rel=1e-5)
    assert stats.diffusion_mean == pytest.approx(float(e.mean()), rel=1e-6)
    assert stats.diffusion_std == pytest.approx(float(e.std()), rel=1e-5)
    assert (stats.timesteps, stats.weighting, stats.images) == (2, "official", 3)


def test_train_dood_then_dood_stats_then_export(tmp_path: Path, capsys) -> None:
    """The commands chain: train-dood's checkpoint and statistics, dood-stats measuring the
    same statistics again, export reading them."""
    out = tmp_path / "diff.pth"
    code = main(["train-dood", "--synthetic", "3", "--steps", "3", "--batch-size", "64",
                 "--denoiser-channels", "32", "--levels", "1", "--middle-blocks", "0",
                 "--timesteps", "2", "--stats-images", "3", "--val", "2", "--half",
                 "--output", str(out), "--no-progress",
                 "--metrics-json", str(tmp_path / "m.json")])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "held-out anomalies (2 scenes)" in printed.out
    state = load_state_dict(out)
    assert state["normalization.mins"].shape == (1, 192)
    assert state["denoiser.input_blocks.0.0.in_layers.2.weight"].dtype == torch.float16
    assert state["normalization.shift"].dtype == torch.float32
    trained = read_statistics(out.with_suffix(".stats.json"))
    assert json.loads((tmp_path / "m.json").read_text())["stats_diffusion_std"] == (
        trained.diffusion_std)

    again = tmp_path / "again.json"
    code = main(["dood-stats", "--model", "dood-demo", "--checkpoint", str(out),
                 "--input-size", "224x448", "--single-window", "--timesteps", "2",
                 "--count", "3", "--synthetic", "3", "--output", str(again), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert read_statistics(again) == trained

    code = main(["export", "--model", "dood-demo", "--checkpoint", str(out), "--dood-stats",
                 str(again), "--timesteps", "2", "--input-size", "112x224",
                 "--exporter", "torchscript", "--output", str(tmp_path / "d.onnx")])
    assert code == 0, capsys.readouterr().err


def test_train_dood_needs_a_segmentor_beyond_the_demo(tmp_path: Path, capsys) -> None:
    code = main(["train-dood", "--model", "dood-segmenter-b", "--output",
                 str(tmp_path / "d.pth")])
    assert code == 2
    assert "needs --segmentor-checkpoint" in capsys.readouterr().err
