"""Shared fixtures: the tiny contract ONNX model (see test/tiny_model.py) and a tiny SAM."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest
from tiny_model import export_tiny_model

# On a CI run, a ROS test that is skipped or deselected fails the run (test/ros_required.py).
pytest_plugins = ("ros_required",)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny contract graph, input 64x96, dynamic batch, metadata score_range [0, 1]."""
    return export_tiny_model(tmp_path_factory.mktemp("tiny_model") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_sam(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A tiny SAM written by `ood-perception export` (its ONNX Runtime check included) from a
    random checkpoint in the official layout, for frames of the tiny contract model's 64x96:
    `encoder` (decoder graph and .pt beside it), `model`, `rc`, `stdout`."""
    from sam_tiny import TINY_VIT, official_state, randomize, save_official

    from ood_perception.cli import export as cli_export
    from ood_perception.cli.main import main
    from ood_perception.models.sam.sam import SAM_VARIANTS, Sam

    folder = tmp_path_factory.mktemp("tiny_sam")
    model = randomize(Sam(TINY_VIT), seed=11).eval()
    checkpoint = save_official(official_state(model), folder / "sam_tiny.pth")
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(io.StringIO()) as out:
        patch.setitem(SAM_VARIANTS, "sam-tiny", TINY_VIT)
        patch.setattr(cli_export, "SAM_MODELS", (*cli_export.SAM_MODELS, "sam-tiny"))
        rc = main(["export", "--model", "sam-tiny", "--checkpoint", str(checkpoint),
                   "--input-size", "64x96", "--output", str(folder / "sam.onnx"),
                   "--save-torch"])
    return SimpleNamespace(rc=rc, stdout=out.getvalue(), encoder=folder / "sam.onnx",
                           model=model, checkpoint=checkpoint)
