"""One TensorRT engine run with torch tensors: the binding loop of every TensorRT runner (the
contract graph, SAM's encoder and decoder).

Each I/O tensor has a buffer allocated once at the optimisation profile's largest shape, its
address aligned to 256 bytes: TensorRT 10 requires I/O tensor addresses to be 256-byte aligned
(`IExecutionContext::setTensorAddress`). Feeds are copied into the start of their buffer, so a
chunk of a batch is never bound at an offset inside the caller's tensor. The engine runs on its
own torch CUDA stream after the caller's stream (`wait_stream`); its outputs are copied out on
that stream and `record_stream`ed for the caller's.
"""

from __future__ import annotations

import contextlib
import math

import torch

from ood_perception.errors import ConfigurationError

ADDRESS_ALIGNMENT = 256


def torch_dtype(trt, dtype) -> torch.dtype:
    """The torch dtype of a TensorRT tensor type."""
    table = {trt.uint8: torch.uint8, trt.float32: torch.float32, trt.float16: torch.float16,
             trt.int32: torch.int32, trt.int64: torch.int64, trt.bool: torch.bool}
    if dtype not in table:
        raise ConfigurationError(f"engine tensor type {dtype} has no torch counterpart here; "
                                 "the graphs' tensors are floats, integers and uint8 frames")
    return table[dtype]


def aligned_empty(numel: int, dtype: torch.dtype, device: str | torch.device) -> torch.Tensor:
    """A flat tensor of `numel` elements whose data starts on an ADDRESS_ALIGNMENT boundary
    (over-allocated by one alignment and offset, whatever the allocator's own alignment)."""
    size = torch.empty((), dtype=dtype).element_size()
    raw = torch.empty(numel * size + ADDRESS_ALIGNMENT, dtype=torch.uint8, device=device)
    offset = -raw.data_ptr() % ADDRESS_ALIGNMENT
    return raw[offset:offset + numel * size].view(dtype)


class EngineRunner:
    """A deserialized engine, one execution context and a preallocated aligned buffer per I/O
    tensor; `run` takes and returns named torch tensors.

    `stream`: the torch CUDA stream the engine runs on; None only where no CUDA exists (CPU
    checks of the bindings with a stand-in engine), where nothing is enqueued on streams.
    """

    def __init__(self, trt, engine, device: str | torch.device,
                 stream: torch.cuda.Stream | None):
        self._engine = engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise ConfigurationError("TensorRT could not create an execution context")
        self.device = torch.device(device)
        self._stream = stream
        self.runtime = None  # set by `load_engine_runner`: the engine must not outlive it
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [name for name in names
                       if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT]
        self.outputs = [name for name in names if name not in self.inputs]
        self.dtypes = {name: torch_dtype(trt, engine.get_tensor_dtype(name)) for name in names}
        # Profile 0's largest input shapes give the largest output shapes.
        self.max_shapes = {name: tuple(engine.get_tensor_profile_shape(name, 0)[2])
                           for name in self.inputs}
        for name, shape in self.max_shapes.items():
            self._set_shape(name, shape)
        for name in self.outputs:
            self.max_shapes[name] = self._output_shape(name)
        self._buffers = {name: aligned_empty(math.prod(shape), self.dtypes[name], self.device)
                         for name, shape in self.max_shapes.items()}

    def _set_shape(self, name: str, shape: tuple[int, ...]) -> None:
        if not self._context.set_input_shape(name, tuple(shape)):
            raise ConfigurationError(f"engine does not take {name!r} of shape {tuple(shape)}")

    def _output_shape(self, name: str) -> tuple[int, ...]:
        shape = tuple(self._context.get_tensor_shape(name))
        if min(shape, default=0) < 0:
            raise ConfigurationError(f"engine output {name!r} has shape {shape} that depends "
                                     "on the data; the graphs' outputs follow their inputs")
        return shape

    def _view(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """The first elements of `name`'s buffer as `shape` (its start: the aligned address)."""
        return self._buffers[name][:math.prod(shape)].view(shape)

    def _bind(self, name: str, tensor: torch.Tensor) -> None:
        address = tensor.data_ptr()
        if address % ADDRESS_ALIGNMENT:
            raise RuntimeError(f"tensor {name!r} at {address:#x} is not "
                               f"{ADDRESS_ALIGNMENT}-byte aligned")
        if not self._context.set_tensor_address(name, address):
            raise ConfigurationError(f"TensorRT rejected the address of tensor {name!r}")

    def run(self, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One execution over `feeds` (every input, any shape inside the profile, on any
        stream of the runner's device) -> fresh output tensors the caller's stream may use."""
        if set(feeds) != set(self.inputs):
            raise ConfigurationError(f"engine inputs are {self.inputs}, got {sorted(feeds)}")
        stream = self._stream
        caller = None
        if stream is not None:
            caller = torch.cuda.current_stream(self.device)
            stream.wait_stream(caller)  # the feeds were written on the caller's stream
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            for name in self.inputs:
                feed = feeds[name]
                shape = tuple(feed.shape)
                if feed.dtype != self.dtypes[name] or len(shape) != len(self.max_shapes[name]):
                    raise ConfigurationError(
                        f"engine input {name!r} is {self.dtypes[name]} of rank "
                        f"{len(self.max_shapes[name])}, got {feed.dtype} {list(shape)}")
                self._set_shape(name, shape)
                buffer = self._view(name, shape)
                buffer.copy_(feed, non_blocking=True)
                if stream is not None and feed.device.type == "cuda":
                    feed.record_stream(stream)  # read on the engine's stream
                self._bind(name, buffer)
            produced = {}
            for name in self.outputs:
                produced[name] = self._view(name, self._output_shape(name))
                self._bind(name, produced[name])
            handle = stream.cuda_stream if stream is not None else 0
            if not self._context.execute_async_v3(handle):
                raise RuntimeError("TensorRT execution failed")
            # The buffers are the next run's: the caller gets copies.
            results = {name: tensor.clone() for name, tensor in produced.items()}
        if caller is not None:
            caller.wait_stream(stream)  # the caller's later work sees the outputs
            for tensor in results.values():
                tensor.record_stream(caller)  # made on the engine's stream, used on the caller's
        return results

    def synchronize(self) -> None:
        """Wait for every run enqueued so far."""
        if self._stream is not None:
            self._stream.synchronize()

    def close(self) -> None:
        self._context = None
        self._engine = None
        self._buffers = {}


def load_engine_runner(trt, serialized: bytes, device: str, source: str) -> EngineRunner:
    """Deserialize `serialized` on CUDA `device` and wrap it with its own stream."""
    index = torch.device(device).index or 0
    with torch.cuda.device(index):
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(serialized)
        if engine is None:
            raise ConfigurationError(f"TensorRT could not load the engine of {source}; delete "
                                     "its .engine file")
        runner = EngineRunner(trt, engine, device, torch.cuda.Stream(device=device))
    runner.runtime = runtime
    return runner
