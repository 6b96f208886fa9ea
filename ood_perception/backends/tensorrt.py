"""TensorRT backend: the contract graph as a cached engine (backends/tensorrt_cache.py) run
through the shared engine runner (backends/tensorrt_engine.py) with torch CUDA tensors.

Bindings are torch CUDA tensors on a torch stream (no pycuda). Written against the TensorRT 10
Python API (name-based tensors, `execute_async_v3`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ood_perception.backends import tensorrt_cache
from ood_perception.backends.base import BackendOutput
from ood_perception.backends.device import parse_device
from ood_perception.backends.tensorrt_cache import PRECISIONS, build_engine, contract_profile
from ood_perception.contract import INPUT_NAME, SCORE_NAME, SEMANTIC_NAME, ModelInfo
from ood_perception.errors import ConfigurationError


def build_contract_engine(onnx_path: str | Path, precision: str = "fp16", max_batch: int = 1,
                          device: int = 0, force: bool = False) -> Path:
    """Build (or find cached) the engine of a contract graph for 1..`max_batch` frames."""
    tensorrt_cache.import_tensorrt()  # first: without it nothing below matters
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ConfigurationError(f"model file {onnx_path} does not exist")
    profile = contract_profile(onnx_path, max_batch)
    return build_engine(onnx_path, precision, profile, device, force)[0]


def build_node_engines(model_path: str | Path, precision: str = "fp16", cameras: int = 1,
                       device: int = 0, sam_model_path: str | Path | None = None,
                       max_boxes: int | None = None, force: bool = False) -> list[Path]:
    """Every engine a node with `cameras` cameras opens: the anomaly graph at batch
    `cameras` and, with S2M refinement, SAM's encoder and decoder engines at the same batch
    (`max_boxes` prompts per decoder call); returns their paths."""
    paths = [build_contract_engine(model_path, precision, cameras, device, force)]
    if sam_model_path:
        from ood_perception.backends.sam_tensorrt import build_sam_engines

        paths += build_sam_engines(sam_model_path, precision, cameras, device, max_boxes,
                                   force)
    return paths


class TensorRTBackend:
    """Runs a cached (or freshly built) engine with torch CUDA tensors as bindings."""

    name = "tensorrt"

    def __init__(self, model_path: str, device: str = "cuda", precision: str = "fp16",
                 max_batch: int = 1, build_only: bool = False, **_unused):
        import onnx

        from ood_perception.backends.tensorrt_engine import load_engine_runner

        parsed = parse_device(device)
        if not parsed.is_cuda:
            raise ConfigurationError(f"backend 'tensorrt' runs on cuda, not {device!r}")
        trt = tensorrt_cache.import_tensorrt()
        if precision not in PRECISIONS:
            raise ConfigurationError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        device_index = parsed.index or 0
        onnx_path = Path(model_path)
        if not onnx_path.is_file():
            raise ConfigurationError(f"model file {onnx_path} does not exist")
        profile = contract_profile(onnx_path, max_batch)
        engine_path, serialized = build_engine(onnx_path, precision, profile, device_index)
        graph = onnx.load(str(onnx_path), load_external_data=False)
        shape = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
        props = {p.key: p.value for p in graph.metadata_props}
        self.info = ModelInfo.from_metadata(props, (shape[1], shape[2]))
        self.device = f"cuda:{device_index}"
        self.max_batch = max_batch
        self.precision, self.engine_path = precision, str(engine_path)
        self._runner = None
        if build_only:
            return
        import torch

        self._torch = torch
        self._runner = load_engine_runner(trt, serialized, self.device,
                                          str(onnx_path))
        self._pinned = None

    def run(self, images: np.ndarray) -> BackendOutput:
        """uint8 [B, H, W, 3] host frames -> host outputs, `max_batch` frames per execution."""
        score, semantic = self.run_torch(images)
        return BackendOutput(score.cpu().numpy(),
                             None if semantic is None else semantic.cpu().numpy())

    def run_torch(self, images):
        """uint8 [B, H, W, 3] (numpy, or a CUDA tensor the GPU pipeline uploaded) -> (score
        float32, classes uint8 or None) [B, H, W] as CUDA tensors, ordered on the caller's
        stream."""
        if self._runner is None:
            raise ConfigurationError("backend was opened with build_only")
        torch = self._torch
        if isinstance(images, np.ndarray):
            images = self._upload(images)
        chunks = [self._runner.run({INPUT_NAME: images[start:start + self.max_batch]})
                  for start in range(0, images.shape[0], self.max_batch)]
        score = torch.cat([chunk[SCORE_NAME].float() for chunk in chunks])
        if SEMANTIC_NAME not in chunks[0]:
            return score, None
        return score, torch.cat([chunk[SEMANTIC_NAME].to(torch.uint8) for chunk in chunks])

    def _upload(self, images: np.ndarray):
        """Host frames -> CUDA through a reused pinned buffer, on the caller's stream."""
        torch = self._torch
        if self._pinned is None or self._pinned.shape != images.shape:
            self._pinned = torch.empty(images.shape, dtype=torch.uint8, pin_memory=True)
        self._pinned.numpy()[...] = images
        return self._pinned.to(self.device, non_blocking=True)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
        self._runner = None
