"""PyTorch backend: the `.pt` deploy file written by `ood-perception export --save-torch`.

The file holds only tensors and plain values (loaded with weights_only=True); the model is
rebuilt through the registry, so it runs the same code that produced the ONNX graph.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ood_perception.backends.base import BackendOutput
from ood_perception.errors import ConfigurationError

PRECISIONS = ("fp32", "fp16", "bf16")


def _deploy_path(model_path: str | Path) -> Path:
    """The `.pt` file itself, or the one beside an exported `.onnx`."""
    path = Path(model_path)
    if path.suffix == ".onnx":
        path = path.with_suffix(".pt")
    if not path.is_file():
        raise ConfigurationError(
            f"torch deploy file not found: {path} (write it with `ood-perception export "
            "--save-torch`)")
    return path


class TorchBackend:
    """A DeployModel on CPU or CUDA, in fp32 or under fp16/bf16 autocast."""

    name = "torch"

    def __init__(self, model_path: str | Path, device: str = "cpu", precision: str = "fp32"):
        import torch

        from ood_perception.export import load_torch_deploy

        if precision not in PRECISIONS:
            raise ConfigurationError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigurationError(f"device {device!r} needs CUDA, which torch does not see")
        if device != "cpu" and not device.startswith("cuda"):
            raise ConfigurationError(f"bad device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")
        if device == "cpu" and precision == "fp16":
            raise ConfigurationError("fp16 needs a CUDA device; use fp32 or bf16 on cpu")
        self._torch = torch
        self._device = torch.device(device)
        self.device = str(self._device)
        self.precision = precision
        self._model = load_torch_deploy(_deploy_path(model_path)).to(self._device).eval()
        self.info = self._model.info

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = self._torch.float16 if self.precision == "fp16" else self._torch.bfloat16
        return self._torch.autocast(self._device.type, dtype=dtype)

    def run(self, images: np.ndarray) -> BackendOutput:
        """`images`: uint8 [B, H, W, 3] RGB at `info.input_size` -> outputs at that size."""
        expected = (*self.info.input_size, 3)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != expected:
            raise ConfigurationError(
                f"backend input must be uint8 [B, {expected[0]}, {expected[1]}, 3], got "
                f"{images.dtype} {list(images.shape)}")
        batch = self._torch.from_numpy(np.ascontiguousarray(images)).to(self._device)
        with self._torch.inference_mode(), self._autocast():
            score, semantic = self._model(batch)
        return BackendOutput(anomaly_score=score.float().cpu().numpy(),
                             semantic=semantic.cpu().numpy())

    def close(self) -> None:
        """Drop the model (and its CUDA memory)."""
        self._model = None
        if self._device.type == "cuda":
            self._torch.cuda.empty_cache()
