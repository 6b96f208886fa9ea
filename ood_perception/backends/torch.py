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


def graph_batch_sizes(max_batch: int) -> list[int]:
    """The batch sizes captured at start-up: every size up to `max_batch` (the node's camera
    count), since a batch holds the cameras whose frames arrived in time."""
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ConfigurationError(f"max batch must be an integer >= 1, got {max_batch!r}")
    return list(range(1, max_batch + 1))


class CudaGraphRunner:
    """`fn(x)` replayed from one CUDA graph per input shape, captured after a warm-up: all at
    once by `prepare` (start-up), or lazily on a shape's first call when `capture_new`.

    Outputs are the graph's static tensors: they are overwritten by the next call. A capture
    that fails (a forward that waits for the host cannot be captured) leaves that shape eager.
    """

    def __init__(self, fn: Callable, device: torch.device, warmup: int = GRAPH_WARMUP,
                 capture_new: bool = True):
        import torch

        self._fn = fn
        self._device = device
        self._warmup = warmup
        self.capture_new = capture_new
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
            with torch.cuda.stream(side):
                for _ in range(self._warmup):
                    self._fn(static_input)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: CUDA calls of other threads (a node's executor) stay legal.
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                outputs = self._fn(static_input)
        return static_input, graph, outputs

    def prepare(self, examples: list[torch.Tensor]) -> None:
        """Capture the graph of each example's shape now; later calls capture nothing new."""
        for example in examples:
            self._ensure(example)
        self.capture_new = False

    def _ensure(self, x: torch.Tensor) -> None:
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

    def __call__(self, x: torch.Tensor):
        """Replay the graph of `x`'s shape (capturing it first when `capture_new`); a shape
        without a graph runs eagerly."""
        if self.capture_new:
            self._ensure(x)
        entry = self._graphs.get((tuple(x.shape), x.dtype))
        if entry is None:
            return self._fn(x)
        static_input, graph, outputs = entry
        static_input.copy_(x)
        graph.replay()
        return outputs


class TorchBackend:
    """A DeployModel on CPU or CUDA, in fp32 or under fp16/bf16 autocast, CUDA graphs on CUDA.

    `model_path`: a `.pt` deploy file (or the `.onnx` it sits beside), or a DeployModel in
    memory (benchmarks, parity checks); the backend works on its own copy of it. `max_batch`:
    capture the CUDA graphs of batches 1..max_batch at start-up instead of on first use.
    """

    name = "torch"

    def __init__(self, model_path: str | Path | DeployModel, device: str = "cpu",
                 precision: str = "fp32", cuda_graphs: bool = True,
                 max_batch: int | None = None):
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
        # With `max_batch` (a node's camera count) every batch size is captured here, at
        # start-up, and no live frame waits for a capture.
        self.graph_batches = graph_batch_sizes(max_batch) if max_batch is not None else None
        self._graphs = None
        if self.cuda_graphs:
            self._graphs = CudaGraphRunner(self._forward, self._device,
                                           capture_new=self.graph_batches is None)
            if self.graph_batches is not None:
                height, width = self.info.input_size
                self._graphs.prepare([
                    torch.zeros((batch, height, width, 3), dtype=torch.uint8,
                                device=self._device) for batch in self.graph_batches])

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
