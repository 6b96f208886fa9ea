"""PyTorch backend: the `.pt` deploy file of `ood-perception export --save-torch`, or a model.

The file holds only tensors and plain values (loaded with weights_only=True); the model is
rebuilt through the registry, so it runs the same code that produced the ONNX graph. On
CUDA it runs fp32 (TF32 off), or fp16/bf16 under autocast (no module needs pinning to fp32:
the GMM heads' Mahalanobis term is a difference, then a scale), and replays one CUDA graph per
batch size.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ood_perception.backends import PRECISIONS as BACKEND_PRECISIONS
from ood_perception.backends.base import BackendOutput
from ood_perception.backends.device import parse_device
from ood_perception.errors import ConfigurationError

if TYPE_CHECKING:
    import torch

    from ood_perception.models.deploy import DeployModel

LOGGER = logging.getLogger(__name__)
PRECISIONS = BACKEND_PRECISIONS["torch"]
# Eager runs before a CUDA graph is captured (cuDNN / cuBLAS pick their kernels, lazy init).
GRAPH_WARMUP = 3


def check_target(device: str, precision: str) -> None:
    """ConfigurationError unless torch can run `precision` on `device` here."""
    import torch

    if precision not in PRECISIONS:
        raise ConfigurationError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if parse_device(device).is_cuda and not torch.cuda.is_available():
        raise ConfigurationError(f"device {device!r} needs CUDA, which torch does not see")
    if device == "cpu" and precision == "fp16":
        raise ConfigurationError("fp16 needs a CUDA device; use fp32 or bf16 on cpu")


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


@contextlib.contextmanager
def _ieee_fp32():
    """Real fp32 matmuls and convolutions on CUDA (no TF32), restoring the global flags."""
    import torch

    cudnn_tf32, matmul = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
        torch.set_float32_matmul_precision(matmul)


def precision_context(device: torch.device, precision: str):
    """Autocast for fp16/bf16 (without its weight-cast cache, which a CUDA graph cannot
    recompute); IEEE fp32 on CUDA, so fp32 means the reference precision."""
    import torch

    if precision != "fp32":
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        return torch.autocast(device.type, dtype=dtype, cache_enabled=False)
    return _ieee_fp32() if device.type == "cuda" else contextlib.nullcontext()


class CudaGraphRunner:
    """`fn(x)` replayed from one CUDA graph per input shape, captured lazily after a warm-up.

    Outputs are the graph's static tensors: they are overwritten by the next call.
    """

    def __init__(self, fn: Callable, device: torch.device, warmup: int = GRAPH_WARMUP):
        import torch

        self._fn = fn
        self._device = device
        self._warmup = warmup
        self._graphs: dict[tuple, tuple] = {}
        # Replays run one at a time and callers copy the outputs out, so all shapes can share
        # one memory pool instead of holding one each.
        with torch.cuda.device(device):
            self._pool = torch.cuda.graph_pool_handle()

    @property
    def captured_shapes(self) -> list[tuple]:
        return [key for key, entry in self._graphs.items() if entry is not None]

    def _capture(self, example: torch.Tensor) -> tuple:
        import torch

        static_input = example.clone()
        with torch.cuda.device(self._device):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), _host_syncs_raise():
                for _ in range(self._warmup):
                    self._fn(static_input)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: CUDA calls of other threads (a node's executor) stay legal.
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                outputs = self._fn(static_input)
        return static_input, graph, outputs

    def __call__(self, x: torch.Tensor):
        """Replay the graph of `x`'s shape, capturing it first; a shape whose capture fails
        runs eagerly from then on (the others keep their graphs)."""
        import torch

        key = (tuple(x.shape), x.dtype)
        if key not in self._graphs:
            try:
                self._graphs[key] = self._capture(x)
            except torch.OutOfMemoryError:
                raise
            except RuntimeError as error:
                if "out of memory" in str(error).lower():  # raised by capture_end as such
                    raise
                LOGGER.warning("CUDA graph capture failed for input %s (%s); that shape runs "
                               "eagerly", list(x.shape), (str(error).splitlines() or [""])[0])
                self._graphs[key] = None
        entry = self._graphs[key]
        if entry is None:
            return self._fn(x)
        static_input, graph, outputs = entry
        static_input.copy_(x)
        graph.replay()
        return outputs


@contextlib.contextmanager
def _host_syncs_raise():
    """A forward that waits for the GPU (`.item()`, host tensors) cannot be captured: let the
    warm-up say so, before a failed capture leaves the allocator mid-capture."""
    import torch

    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


class TorchBackend:
    """A DeployModel on CPU or CUDA, in fp32 or under fp16/bf16 autocast, CUDA graphs on CUDA.

    `model_path`: a `.pt` deploy file (or the `.onnx` it sits beside), or a DeployModel in
    memory (benchmarks, parity checks); the backend works on its own copy of it.
    """

    name = "torch"

    def __init__(self, model_path: str | Path | DeployModel, device: str = "cpu",
                 precision: str = "fp32", cuda_graphs: bool = True):
        import torch

        check_target(device, precision)
        self._torch = torch
        self._device = torch.device(device)
        if self._device.type == "cuda" and self._device.index is None:
            self._device = torch.device("cuda", torch.cuda.current_device())
        self.device = str(self._device)
        self.precision = precision
        if isinstance(model_path, torch.nn.Module):
            model = copy.deepcopy(model_path)
        else:
            from ood_perception.models.deploy_file import load_torch_deploy

            model = load_torch_deploy(_deploy_path(model_path))
        self._model = model.to(self._device).eval()
        self.info = model.info
        self.cuda_graphs = cuda_graphs and self._device.type == "cuda"
        self._graphs = CudaGraphRunner(self._forward, self._device) if self.cuda_graphs else None

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self._torch.no_grad(), precision_context(self._device, self.precision):
            return self._model(batch)

    def _checked_input(self, images) -> torch.Tensor:
        torch = self._torch
        expected = (*self.info.input_size, 3)
        if isinstance(images, np.ndarray):
            dtype, shape = images.dtype == np.uint8, tuple(images.shape)
        elif torch.is_tensor(images):
            dtype, shape = images.dtype == torch.uint8, tuple(images.shape)
        else:
            raise ConfigurationError(
                f"backend input must be a numpy array or torch tensor, got {type(images)}")
        if not dtype or len(shape) != 4 or shape[1:] != expected:
            raise ConfigurationError(
                f"backend input must be uint8 [B, {expected[0]}, {expected[1]}, 3], got "
                f"{images.dtype} {list(shape)}")
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        return images.to(self._device).contiguous()

    @property
    def graphs_captured(self) -> bool:
        """Whether any input shape runs from a CUDA graph (not when eager or capture failed)."""
        return self._graphs is not None and bool(self._graphs.captured_shapes)

    def run_torch(self, images) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 [B, H, W, 3] (numpy or tensor) -> (score float32, classes uint8) [B, H, W]
        as new tensors on the backend's device: the GPU pipeline keeps them there."""
        batch = self._checked_input(images)
        if self._graphs is None:
            score, semantic = self._forward(batch)
            return score.float(), semantic
        score, semantic = self._graphs(batch)
        return score.float().clone(), semantic.clone()

    def run(self, images) -> BackendOutput:
        """`images`: uint8 [B, H, W, 3] RGB at `info.input_size` -> host outputs at that size."""
        score, semantic = self.run_torch(images)
        return BackendOutput(anomaly_score=score.cpu().numpy(), semantic=semantic.cpu().numpy())

    def close(self) -> None:
        """Drop the model and its graphs (and their CUDA memory)."""
        self._model = None
        self._graphs = None
        if self._device.type == "cuda":
            self._torch.cuda.empty_cache()
