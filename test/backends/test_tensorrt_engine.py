"""The shared TensorRT engine runner against a stand-in engine that checks what TensorRT 10
checks: every I/O address set and 256-byte aligned, input shapes inside the profile, each
tensor's dtype; it computes its outputs from the bytes at the bound addresses, so a wrong
binding gives wrong numbers. Runs without TensorRT and without CUDA (CPU tensors)."""

from __future__ import annotations

import ctypes
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ood_perception.backends.tensorrt_engine import (
    ADDRESS_ALIGNMENT,
    EngineRunner,
    aligned_empty,
)
from ood_perception.errors import ConfigurationError

TRT = SimpleNamespace(
    TensorIOMode=SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT"),
    uint8="UINT8", float32="FLOAT", float16="HALF", int32="INT32", int64="INT64", bool="BOOL")
NUMPY = {"UINT8": np.uint8, "FLOAT": np.float32, "INT32": np.int32, "INT64": np.int64}


def _array(address: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    """The memory at `address` as an array (what the engine reads or writes)."""
    count = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = (ctypes.c_uint8 * count).from_address(address)
    return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


class FakeContext:
    """The IExecutionContext calls the runner makes, with TensorRT's checks."""

    def __init__(self, engine: FakeEngine):
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.executions: list[dict[str, tuple[int, tuple[int, ...]]]] = []

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        low, _, high = self.engine.profile[name]
        if len(shape) != len(low) or any(not lo <= s <= hi for lo, s, hi in
                                         zip(low, shape, high, strict=True)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self.engine.profile:
            return self.shapes[name]
        return self.engine.output_shape(name, self.shapes)

    def set_tensor_address(self, name: str, address: int) -> bool:
        if name not in self.engine.modes:
            return False
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        for name in self.engine.modes:  # TensorRT: every I/O address set and 256-byte aligned
            assert name in self.addresses, f"{name} has no address"
            assert self.addresses[name] % 256 == 0, f"{name} at {self.addresses[name]:#x}"
        inputs = {name: _array(self.addresses[name], self.shapes[name],
                               NUMPY[self.engine.dtypes[name]])
                  for name in self.engine.profile}
        self.executions.append({name: (self.addresses[name], self.get_tensor_shape(name))
                                for name in self.engine.modes})
        for name, values in self.engine.compute(inputs).items():
            target = _array(self.addresses[name], self.get_tensor_shape(name),
                            NUMPY[self.engine.dtypes[name]])
            target[...] = values
        return True


class FakeEngine:
    """The contract graph's I/O: uint8 image [B, H, W, 3] -> float32 score (channel mean) and
    uint8 semantic (channel 0 > 127)."""

    def __init__(self, max_batch: int = 3, size: tuple[int, int] = (5, 7)):
        self.profile = {"image": ((1, *size, 3), (max_batch, *size, 3), (max_batch, *size, 3))}
        self.modes = {"image": "INPUT", "anomaly_score": "OUTPUT", "semantic": "OUTPUT"}
        self.dtypes = {"image": "UINT8", "anomaly_score": "FLOAT", "semantic": "UINT8"}
        self.contexts: list[FakeContext] = []

    num_io_tensors = 3

    def get_tensor_name(self, index: int) -> str:
        return list(self.modes)[index]

    def get_tensor_mode(self, name: str) -> str:
        return self.modes[name]

    def get_tensor_dtype(self, name: str) -> str:
        return self.dtypes[name]

    def get_tensor_profile_shape(self, name: str, profile: int):
        return self.profile[name]

    def create_execution_context(self) -> FakeContext:
        self.contexts.append(FakeContext(self))
        return self.contexts[-1]

    def output_shape(self, name: str, shapes: dict) -> tuple[int, ...]:
        return shapes["image"][:3]

    def compute(self, inputs: dict) -> dict:
        image = inputs["image"]
        return {"anomaly_score": image.mean(axis=3, dtype=np.float32),
                "semantic": (image[..., 0] > 127).astype(np.uint8)}


def test_aligned_empty_starts_on_the_alignment_whatever_the_allocator() -> None:
    for numel in (1, 3, 1000):
        for dtype in (torch.uint8, torch.float32, torch.int64):
            tensor = aligned_empty(numel, dtype, "cpu")
            assert tensor.data_ptr() % ADDRESS_ALIGNMENT == 0
            assert tensor.numel() == numel and tensor.dtype == dtype


def test_buffers_are_allocated_once_at_the_profile_maximum() -> None:
    engine = FakeEngine(max_batch=3)
    runner = EngineRunner(TRT, engine, "cpu", stream=None)
    assert runner.inputs == ["image"] and runner.outputs == ["anomaly_score", "semantic"]
    assert runner.max_shapes == {"image": (3, 5, 7, 3), "anomaly_score": (3, 5, 7),
                                 "semantic": (3, 5, 7)}
    assert runner.dtypes["anomaly_score"] == torch.float32


def test_chunks_of_a_batch_are_bound_at_aligned_buffers_with_right_values() -> None:
    """Frames 3..4 of a batch of 5 start 3*H*W*3 = 315 bytes into the caller's tensor; TensorRT
    must see them at an aligned buffer instead, with the profile's shapes and dtypes."""
    engine = FakeEngine(max_batch=3)
    runner = EngineRunner(TRT, engine, "cpu", stream=None)
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (5, 5, 7, 3),
                                                                dtype=np.uint8))
    chunks = [runner.run({"image": frames[start:start + 3]}) for start in (0, 3)]
    assert frames[3:].data_ptr() % ADDRESS_ALIGNMENT != 0  # what was bound before
    executions = engine.contexts[0].executions
    assert [run["image"][1] for run in executions] == [(3, 5, 7, 3), (2, 5, 7, 3)]
    assert all(address % 256 == 0 for run in executions for address, _ in run.values())
    # The same buffers every run: nothing allocated per frame.
    assert executions[0]["image"][0] == executions[1]["image"][0]
    score = torch.cat([chunk["anomaly_score"] for chunk in chunks])
    semantic = torch.cat([chunk["semantic"] for chunk in chunks])
    expected = frames.numpy().mean(axis=3, dtype=np.float32)
    np.testing.assert_allclose(score.numpy(), expected, rtol=1e-6)
    assert score.dtype == torch.float32 and semantic.dtype == torch.uint8
    np.testing.assert_array_equal(semantic.numpy(), frames.numpy()[..., 0] > 127)


def test_outputs_are_the_callers_not_the_next_runs_buffers() -> None:
    runner = EngineRunner(TRT, FakeEngine(), "cpu", stream=None)
    first = runner.run({"image": torch.zeros((1, 5, 7, 3), dtype=torch.uint8)})
    runner.run({"image": torch.full((1, 5, 7, 3), 200, dtype=torch.uint8)})
    assert float(first["anomaly_score"].max()) == 0.0


@pytest.mark.parametrize("feed,message", [
    (torch.zeros((4, 5, 7, 3), dtype=torch.uint8), "does not take 'image' of shape"),
    (torch.zeros((1, 5, 7, 3), dtype=torch.float32), "is torch.uint8 of rank 4"),
    (torch.zeros((5, 7, 3), dtype=torch.uint8), "is torch.uint8 of rank 4"),
])
def test_feeds_outside_the_profile_or_of_another_dtype_are_refused(feed, message) -> None:
    runner = EngineRunner(TRT, FakeEngine(max_batch=3), "cpu", stream=None)
    with pytest.raises(ConfigurationError, match=message):
        runner.run({"image": feed})


def test_a_misaligned_address_never_reaches_tensorrt() -> None:
    runner = EngineRunner(TRT, FakeEngine(), "cpu", stream=None)
    misaligned = torch.zeros(ADDRESS_ALIGNMENT * 2, dtype=torch.uint8)[1:9]
    with pytest.raises(RuntimeError, match="not 256-byte aligned"):
        runner._bind("image", misaligned)
