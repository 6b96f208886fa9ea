"""What every worker builds once: the same `Pipeline` the node and the tools run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ood_perception.contract import ModelInfo
from ood_perception.core.pipeline import Pipeline
from ood_perception.core.postprocess import PostprocessConfig


@dataclass(frozen=True)
class PipelineSpec:
    """A model file, its runtime and how its scores become obstacles; sent to each worker,
    so everything in it must pickle (module-level functions, `functools.partial`)."""

    model: str  # exported contract model (.onnx, or .pt for torch), readable by the workers
    backend: str = "onnxruntime"
    device: str | None = None  # None: the backend's default; the runner sets "cuda" on GPUs
    precision: str | None = None  # None: the backend's default (`--precision`)
    # CPU threads of ONNX Runtime's session (None: one per core); the runner sets a CPU
    # worker's CPUs, as Ray's OMP_NUM_THREADS does for torch, so workers do not contend.
    threads: int | None = None
    # Frames per backend call (`mine --batch-size`), for the backends that size their
    # start-up for it (`BATCH_SIZED`); None: the backend's default.
    max_batch: int | None = None
    # ModelInfo -> PostprocessConfig (e.g. the node's params with the graph's score range);
    # None: PostprocessConfig() defaults, as `evaluate` uses.
    postprocess: Callable[[ModelInfo], PostprocessConfig] | None = None

    def build(self) -> Pipeline:
        """Open the model on this worker's device and wrap it in a Pipeline."""
        from ood_perception.backends import BATCH_SIZED, create_backend

        options = {} if self.device is None else {"device": self.device}
        if self.precision is not None:
            options["precision"] = self.precision
        if self.threads is not None and self.backend == "onnxruntime":
            options["intra_op_threads"] = self.threads
        if self.max_batch is not None and self.backend in BATCH_SIZED:
            options["max_batch"] = self.max_batch
        backend = create_backend(self.backend, self.model, **options)
        config = PostprocessConfig() if self.postprocess is None else self.postprocess(
            backend.info)
        return Pipeline(backend, config)
