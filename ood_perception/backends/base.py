"""What every backend takes and returns (the exported-graph contract, `contract.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ood_perception.contract import ModelInfo


@dataclass
class BackendOutput:
    """Per-batch outputs at the model input size, as host numpy arrays."""

    anomaly_score: np.ndarray  # float32 [B, H, W], higher = more anomalous
    semantic: np.ndarray | None  # uint8 [B, H, W] class ids, None if the graph has none


class Backend(Protocol):
    """A loaded model: uint8 RGB batch in, contract outputs out."""

    name: str  # "onnxruntime", "torch", "tensorrt"
    info: ModelInfo
    device: str  # where it runs, e.g. "cpu", "cuda:0" (for diagnostics)

    def run(self, images: np.ndarray) -> BackendOutput:
        """`images`: uint8 [B, H, W, 3] RGB at `info.input_size`."""
        ...

    def close(self) -> None:
        """Release runtime resources; the backend is unusable afterwards."""
        ...
