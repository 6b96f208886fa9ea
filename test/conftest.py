"""Shared fixtures: the tiny contract ONNX model (see test/tiny_model.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_model import export_tiny_model


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny contract graph, input 64x96, dynamic batch, metadata score_range [0, 1]."""
    return export_tiny_model(tmp_path_factory.mktemp("tiny_model") / "tiny.onnx")
