"""TensorRT backend: builds an engine from the contract ONNX on the target GPU and caches it.

The engine is cached beside the ONNX under a key of the ONNX sha256, TensorRT version, GPU
name and compute capability, precision and batch size; any mismatch rebuilds it and says
why. Bindings are torch CUDA tensors on a torch stream (no pycuda). Written against the
TensorRT 10 Python API (name-based tensors, `execute_async_v3`); TensorRT 11 dropped the
FP16 builder flag and per-layer precisions, so there it builds FP32 engines only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ood_perception.backends import PRECISIONS as BACKEND_PRECISIONS
from ood_perception.backends.base import BackendOutput
from ood_perception.backends.device import parse_device
from ood_perception.contract import INPUT_NAME, SCORE_NAME, SEMANTIC_NAME, ModelInfo
from ood_perception.errors import ConfigurationError

LOGGER = logging.getLogger(__name__)
PRECISIONS = BACKEND_PRECISIONS["tensorrt"]
WORKSPACE_BYTES = 4 << 30
# How `build_engine` configures the builder; bump it when that changes, so engines built the
# old way are rebuilt (2: TF32 off in fp32, only floating-point layers pinned to FP32).
BUILDER_SETTINGS = 2


def import_tensorrt():
    """The `tensorrt` module, or a ConfigurationError saying how to get it."""
    try:
        import tensorrt
    except ImportError as error:
        raise ConfigurationError(
            "backend 'tensorrt' needs the TensorRT >= 10 Python package "
            "(pip install tensorrt, or JetPack on Jetson); use backend 'onnxruntime' or "
            f"'torch' on this machine ({error})"
        ) from error
    if int(tensorrt.__version__.split(".")[0]) < 10:
        raise ConfigurationError(f"TensorRT >= 10 is required, found {tensorrt.__version__}")
    return tensorrt


def fp16_supported(trt) -> bool:
    """Whether this TensorRT still builds mixed-precision engines from an FP32 graph."""
    return hasattr(trt.BuilderFlag, "FP16")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; a cached engine is reused only on an exact match."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    max_batch: int
    builder_settings: int = BUILDER_SETTINGS
    # Optimisation profile of graphs other than the contract's (JSON of `shapes`); "" for the
    # contract's image-batch profile.
    profile: str = ""

    def mismatch(self, other: EngineKey) -> str:
        """Human-readable list of the fields that differ, empty when equal."""
        mine, theirs = asdict(self), asdict(other)
        return ", ".join(
            f"{name} {theirs[name]!r} -> {mine[name]!r}"
            for name in mine
            if mine[name] != theirs[name]
        )


def engine_path_for(onnx_path: Path, precision: str) -> Path:
    """`model.onnx` -> `model.fp16.engine`, with its key in `model.fp16.engine.json`."""
    return onnx_path.with_suffix(f".{precision}.engine")


def timing_cache_path_for(onnx_path: Path, key: EngineKey) -> Path:
    """Timing caches hold kernel timings of one TensorRT version on one GPU architecture."""
    tag = f"trt{key.tensorrt_version}.sm{key.compute_capability.replace('.', '')}"
    return onnx_path.with_suffix(f".{tag}.timing_cache")


def write_atomically(path: Path, data: bytes) -> None:
    """Write through a temporary file and rename it, so a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def cached_engine_status(onnx_path: Path, key: EngineKey) -> tuple[bool, str]:
    """Whether a usable engine is cached for `key`, and why not when it is not."""
    engine_path = engine_path_for(onnx_path, key.precision)
    key_path = engine_path.with_name(engine_path.name + ".json")
    if not engine_path.is_file() or not key_path.is_file():
        return False, f"no cached engine at {engine_path}"
    try:
        fields = json.loads(key_path.read_text())
        fields.setdefault("builder_settings", 1)  # keys from before the field: settings 1
        cached = EngineKey(**fields)
    except (AttributeError, TypeError, ValueError) as error:
        return False, f"unreadable engine key {key_path} ({error})"
    difference = key.mismatch(cached)
    if difference:
        return False, f"cached engine is stale: {difference}"
    return True, f"cached engine {engine_path} matches"


def current_engine_key(onnx_path: Path, precision: str, max_batch: int, device: int = 0):
    """The key for building `onnx_path` on CUDA device `device` with this TensorRT."""
    import torch

    trt = import_tensorrt()
    if not torch.cuda.is_available():
        raise ConfigurationError("backend 'tensorrt' needs a CUDA GPU; none is visible")
    major, minor = torch.cuda.get_device_capability(device)
    return EngineKey(
        onnx_sha256=file_sha256(onnx_path),
        tensorrt_version=trt.__version__,
        gpu_name=torch.cuda.get_device_name(device),
        compute_capability=f"{major}.{minor}",
        precision=precision,
        max_batch=max_batch,
    )


def _keep_sensitive_layers_fp32(trt, network) -> int:
    """Pin floating-point normalisation, softmax and reductions to FP32 inside an FP16 engine
    (integer reductions are shape arithmetic, whose types TensorRT fixes itself)."""
    sensitive = {trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE}
    floats = {trt.float32, trt.float16}
    pinned = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        outputs = [i for i in range(layer.num_outputs) if layer.get_output(i).dtype in floats]
        if layer.type in sensitive and outputs:
            layer.precision = trt.float32
            for output in outputs:
                layer.set_output_type(output, trt.float32)
            pinned += 1
    return pinned


def configure_precision(trt, config, network, precision: str) -> None:
    """FP16 with the sensitive layers kept FP32, or strict FP32 (TF32, on by default, off)."""
    if precision == "fp16":
        if not fp16_supported(trt):
            raise ConfigurationError(
                f"TensorRT {trt.__version__} builds only the graph's own types (no FP16 "
                "builder flag since TensorRT 11): use --precision fp32, or TensorRT 10.x")
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        LOGGER.info("kept %d layers in FP32", _keep_sensitive_layers_fp32(trt, network))
    elif hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)


def _attach_timing_cache(config, path: Path):
    """Reuse the timing cache at `path` when TensorRT accepts it, else start an empty one."""
    cache = config.create_timing_cache(path.read_bytes() if path.is_file() else b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        LOGGER.warning("timing cache %s does not fit this GPU or TensorRT; starting a new one",
                       path)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def _add_batch_profile(builder, config, image, max_batch: int, onnx_path: Path) -> None:
    """Checks the input's shape against the contract and `max_batch`; a dynamic batch gets an
    optimisation profile for 1..max_batch frames."""
    batch, height, width, channels = image.shape
    if min(height, width, channels) < 1:
        raise ConfigurationError(f"{onnx_path} input shape {tuple(image.shape)} must have a "
                                 "fixed height, width and channel count")
    if batch != -1:
        if batch != max_batch:
            raise ConfigurationError(f"{onnx_path} takes a fixed batch of {batch}; use "
                                     f"max_batch {batch} or export with a dynamic batch")
        return
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, height, width, channels),
                      (max_batch, height, width, channels), (max_batch, height, width, channels))
    config.add_optimization_profile(profile)


def _add_profile(builder, config, network, shapes: dict, onnx_path: Path) -> None:
    """One optimisation profile with `shapes`: input name -> (min, opt, max) shapes."""
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    if set(shapes) != names:
        raise ConfigurationError(f"{onnx_path} has inputs {sorted(names)}; the profile names "
                                 f"{sorted(shapes)}")
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shapes.items():
        profile.set_shape(name, tuple(low), tuple(opt), tuple(high))
    config.add_optimization_profile(profile)


def build_engine(onnx_path: str | Path, precision: str = "fp16", max_batch: int = 1,
                 device: int = 0, force: bool = False, shapes: dict | None = None) -> Path:
    """Build (or reuse) the engine for `onnx_path`; returns the engine path.

    `shapes` (input name -> (min, opt, max) shapes) replaces the contract's image-batch profile
    for graphs with other inputs, such as SAM's prompt-and-mask decoder.
    """
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ConfigurationError(f"max batch must be an integer >= 1, got {max_batch!r}")
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    if precision not in PRECISIONS:
        raise ConfigurationError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not onnx_path.is_file():
        raise ConfigurationError(f"model file {onnx_path} does not exist")
    key = current_engine_key(onnx_path, precision, max_batch, device)
    if shapes is not None:
        key = replace(key, profile=json.dumps(shapes, sort_keys=True))
    usable, reason = cached_engine_status(onnx_path, key)
    engine_path = engine_path_for(onnx_path, precision)
    if usable and not force:
        LOGGER.info(reason)
        return engine_path
    LOGGER.warning("building TensorRT engine (%s); this takes minutes", reason)
    import torch

    with torch.cuda.device(device):
        _build(trt, onnx_path, key, engine_path, max_batch, shapes)
    return engine_path


def _build(trt, onnx_path: Path, key: EngineKey, engine_path: Path, max_batch: int,
           shapes: dict | None = None) -> None:
    """Parse, configure and build on the current CUDA device; writes the engine, its key and
    the timing cache."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConfigurationError(f"TensorRT cannot parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    configure_precision(trt, config, network, key.precision)
    timing_cache_path = timing_cache_path_for(onnx_path, key)
    _attach_timing_cache(config, timing_cache_path)
    if shapes is not None:
        _add_profile(builder, config, network, shapes, onnx_path)
    else:
        image = network.get_input(0)
        if image.name != INPUT_NAME:
            raise ConfigurationError(f"{onnx_path} input is {image.name!r}, not {INPUT_NAME!r}")
        _add_batch_profile(builder, config, image, max_batch, onnx_path)

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConfigurationError(f"TensorRT failed to build an engine from {onnx_path}")
    write_atomically(engine_path, bytes(serialized))
    write_atomically(engine_path.with_name(engine_path.name + ".json"),
                     json.dumps(asdict(key), indent=2).encode())
    timing_cache = config.get_timing_cache()
    if timing_cache is not None:
        write_atomically(timing_cache_path, bytes(timing_cache.serialize()))
    LOGGER.warning("built %s in %.0f s", engine_path, time.perf_counter() - started)


def _torch_dtype(trt, dtype):
    import torch

    table = {
        trt.uint8: torch.uint8, trt.float32: torch.float32, trt.float16: torch.float16,
        trt.int32: torch.int32, trt.int64: torch.int64, trt.bool: torch.bool,
    }
    if dtype not in table:
        raise ConfigurationError(f"engine tensor type {dtype} has no torch counterpart here; "
                                 "the contract's outputs are float32 scores and integer classes")
    return table[dtype]


class TensorRTBackend:
    """Runs a cached (or freshly built) engine with torch CUDA tensors as bindings."""

    name = "tensorrt"

    def __init__(self, model_path: str, device: str = "cuda", precision: str = "fp16",
                 max_batch: int = 1, build_only: bool = False, **_unused):
        import onnx
        import torch

        parsed = parse_device(device)
        if not parsed.is_cuda:
            raise ConfigurationError(f"backend 'tensorrt' runs on cuda, not {device!r}")
        device_index = parsed.index or 0
        onnx_path = Path(model_path)
        engine_path = build_engine(onnx_path, precision, max_batch, device_index)
        graph = onnx.load(str(onnx_path), load_external_data=False)
        shape = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
        props = {p.key: p.value for p in graph.metadata_props}
        self.info = ModelInfo.from_metadata(props, (shape[1], shape[2]))
        self.device = f"cuda:{device_index}"
        self.max_batch = max_batch
        self.precision, self.engine_path = precision, str(engine_path)
        if build_only:
            self._context = None
            return

        trt = import_tensorrt()
        self._torch = torch
        self._trt = trt
        with torch.cuda.device(device_index):
            self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if self._engine is None:
                raise ConfigurationError(f"TensorRT could not load {engine_path}; delete it")
            self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream(device=self.device)
        self._outputs = [
            self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)
            if self._engine.get_tensor_mode(self._engine.get_tensor_name(i))
            == trt.TensorIOMode.OUTPUT
        ]
        self._pinned = None

    def run(self, images: np.ndarray) -> BackendOutput:
        """uint8 [B, H, W, 3] host frames -> host outputs, `max_batch` frames per execution."""
        score, semantic = self.run_torch(images)
        return BackendOutput(score.cpu().numpy(),
                             None if semantic is None else semantic.cpu().numpy())

    def run_torch(self, images):
        """uint8 [B, H, W, 3] (numpy, or a CUDA tensor the GPU pipeline uploaded) -> (score
        float32, classes uint8 or None) [B, H, W] as CUDA tensors, after the stream finished."""
        if self._context is None:
            raise ConfigurationError("backend was opened with build_only")
        torch = self._torch
        if isinstance(images, np.ndarray):
            images = self._upload(images)
        else:  # uploaded on the caller's stream: the engine's stream must see the copy
            self._stream.wait_stream(torch.cuda.current_stream(images.device))
        chunks = [self._run_chunk(images[start:start + self.max_batch])
                  for start in range(0, images.shape[0], self.max_batch)]
        self._stream.synchronize()
        score = torch.cat([score for score, _ in chunks])
        semantic = None if chunks[0][1] is None else torch.cat([sem for _, sem in chunks])
        return score, semantic

    def _upload(self, images: np.ndarray):
        """Host frames -> CUDA through a reused pinned buffer, on the engine's stream."""
        torch = self._torch
        if self._pinned is None or self._pinned.shape != images.shape:
            self._pinned = torch.empty(images.shape, dtype=torch.uint8, pin_memory=True)
        self._pinned.numpy()[...] = images
        with torch.cuda.stream(self._stream):
            return self._pinned.to(self.device, non_blocking=True)

    def _run_chunk(self, image):
        torch = self._torch
        with torch.cuda.stream(self._stream):
            image = image.contiguous()
            if not self._context.set_input_shape(INPUT_NAME, tuple(image.shape)):
                raise ConfigurationError(
                    f"engine does not take input shape {tuple(image.shape)}")
            self._bind(INPUT_NAME, image)
            outputs = {}
            for name in self._outputs:
                shape = tuple(self._context.get_tensor_shape(name))
                if min(shape) < 0:
                    raise ConfigurationError(f"engine output {name!r} has shape {shape} that "
                                             "depends on the data; contract outputs are static")
                dtype = _torch_dtype(self._trt, self._engine.get_tensor_dtype(name))
                outputs[name] = torch.empty(shape, dtype=dtype, device=self.device)
                self._bind(name, outputs[name])
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            score = outputs[SCORE_NAME].float()
            semantic = outputs.get(SEMANTIC_NAME)
            semantic = None if semantic is None else semantic.to(torch.uint8)
        # Made on the engine's stream, used on the caller's: the allocator must know.
        caller = torch.cuda.current_stream(self._stream.device)
        for tensor in (score, semantic):
            if tensor is not None:
                tensor.record_stream(caller)
        return score, semantic

    def _bind(self, name: str, tensor) -> None:
        if not self._context.set_tensor_address(name, tensor.data_ptr()):
            raise ConfigurationError(f"TensorRT rejected the address of tensor {name!r}")

    def close(self) -> None:
        self._context = None
        self._engine = None
