"""Inference runtimes behind one interface: `create_backend(kind, model_path, **options)`."""

from __future__ import annotations

import importlib

from ood_perception.backends.base import Backend, BackendOutput
from ood_perception.errors import ConfigurationError

# kind -> (module, class); modules import their runtime only when chosen.
BACKENDS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("ood_perception.backends.onnxruntime", "OnnxRuntimeBackend"),
    "torch": ("ood_perception.backends.torch", "TorchBackend"),
    "tensorrt": ("ood_perception.backends.tensorrt", "TensorRTBackend"),
}
# kind -> the precisions it builds or runs, its default first; ONNX Runtime runs the graph
# as exported.
PRECISIONS: dict[str, tuple[str, ...]] = {
    "onnxruntime": (),
    "torch": ("fp32", "fp16", "bf16"),
    "tensorrt": ("fp16", "fp32"),
}
# Kinds that size their start-up for the largest batch (`max_batch` frames per call): the
# TensorRT engine's optimisation profile, torch's CUDA graphs captured before the first frame.
BATCH_SIZED: tuple[str, ...] = ("tensorrt", "torch")


def create_backend(kind: str, model_path: str, **options) -> Backend:
    """Open `model_path` with the named runtime; a bad choice raises `ConfigurationError`."""
    if kind not in BACKENDS:
        raise ConfigurationError(
            f"unknown backend {kind!r}; choose one of: {', '.join(sorted(BACKENDS))}"
        )
    module_name, class_name = BACKENDS[kind]
    backend_class = getattr(importlib.import_module(module_name), class_name)
    return backend_class(model_path, **options)


__all__ = ["BACKENDS", "PRECISIONS", "Backend", "BackendOutput", "create_backend"]
