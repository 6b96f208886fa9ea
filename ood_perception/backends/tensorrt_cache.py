"""TensorRT engines built from an ONNX graph and cached beside it, under a key of everything the
engine depends on.

The key covers the ONNX file and every external data file it names (sha256 each), the
optimisation profile (min/opt/max shape of every input), the precision, the TensorRT version
and the GPU (name and compute capability). An engine file holds its key in a header ahead of
the serialized engine, so engine and key are written, replaced and read as one atomic unit.
Written against the TensorRT 10 Python API; TensorRT 11 dropped the FP16 builder flag and
per-layer precisions, so there it builds FP32 engines only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ood_perception.backends import PRECISIONS as BACKEND_PRECISIONS
from ood_perception.contract import INPUT_NAME
from ood_perception.errors import ConfigurationError

LOGGER = logging.getLogger(__name__)
PRECISIONS = BACKEND_PRECISIONS["tensorrt"]
WORKSPACE_BYTES = 4 << 30
# How `build_engine` configures the builder; bump it when that changes, so engines built the
# old way are rebuilt (2: TF32 off in fp32, only floating-point layers pinned to FP32).
BUILDER_SETTINGS = 2
# Engine file: MAGIC, the key's JSON length (uint64, little endian), the key, the engine.
MAGIC = b"ood_perception.trt-engine/1\n"
# input name -> (min, opt, max) shapes: one TensorRT optimisation profile.
Profile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


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


def graph_files(onnx_path: Path) -> list[Path]:
    """The ONNX file and the external data files its initializers name (ONNX external data:
    `location` relative to the graph's folder)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    locations = {entry.value for tensor in model.graph.initializer
                 if tensor.data_location == onnx.TensorProto.EXTERNAL
                 for entry in tensor.external_data if entry.key == "location"}
    files = [onnx_path, *(onnx_path.parent / location for location in sorted(locations))]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise ConfigurationError(f"{onnx_path} names external data that is missing: "
                                 f"{', '.join(missing)}")
    return files


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; a cached engine is reused only on an exact match."""

    onnx_sha256: str
    # "name=sha256" of each external data file, ";"-joined ("" without external data).
    external_data_sha256: str
    # The optimisation profile as JSON (input name -> [min, opt, max] shapes).
    profile: str
    precision: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    builder_settings: int = BUILDER_SETTINGS

    def mismatch(self, other: EngineKey) -> str:
        """Human-readable list of the fields that differ, empty when equal."""
        mine, theirs = asdict(self), asdict(other)
        return ", ".join(f"{name} {theirs[name]!r} -> {mine[name]!r}"
                         for name in mine if mine[name] != theirs[name])


def engine_key(onnx_path: Path, precision: str, profile: Profile, tensorrt_version: str,
               gpu_name: str, compute_capability: str) -> EngineKey:
    """The key of building `onnx_path` with `profile` and `precision` on that TensorRT and GPU."""
    graph, *external = graph_files(onnx_path)
    return EngineKey(
        onnx_sha256=file_sha256(graph),
        external_data_sha256=";".join(f"{path.name}={file_sha256(path)}" for path in external),
        profile=json.dumps({name: [list(shape) for shape in shapes]
                            for name, shapes in sorted(profile.items())}),
        precision=precision, tensorrt_version=tensorrt_version, gpu_name=gpu_name,
        compute_capability=compute_capability)


def contract_profile(onnx_path: Path, max_batch: int) -> Profile:
    """The contract graph's profile: 1..`max_batch` frames of its fixed H x W x 3 (a graph
    exported with a fixed batch takes exactly that batch)."""
    import onnx

    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ConfigurationError(f"max batch must be an integer >= 1, got {max_batch!r}")
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    image = next((value for value in graph.input if value.name == INPUT_NAME), None)
    if image is None:
        raise ConfigurationError(f"{onnx_path} has no {INPUT_NAME!r} input")
    batch, *frame = [dim.dim_value for dim in image.type.tensor_type.shape.dim]
    if len(frame) != 3 or min(frame) < 1:
        raise ConfigurationError(f"{onnx_path} input must be [B, H, W, 3] with a fixed H, W "
                                 "and channel count")
    if batch and batch != max_batch:
        raise ConfigurationError(f"{onnx_path} takes a fixed batch of {batch}; use max batch "
                                 f"{batch} or export with a dynamic batch")
    low = (batch or 1, *frame)
    high = (max_batch, *frame)
    return {INPUT_NAME: (low, high, high)}


def engine_path_for(onnx_path: Path, precision: str) -> Path:
    """`model.onnx` -> `model.fp16.engine` (key header + serialized engine)."""
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


def write_engine(path: Path, key: EngineKey, engine: bytes) -> None:
    """The key header and the engine, in one file replaced atomically."""
    header = json.dumps(asdict(key), sort_keys=True).encode()
    write_atomically(path, MAGIC + struct.pack("<Q", len(header)) + header + engine)


def read_engine(path: Path, key: EngineKey) -> tuple[bytes | None, str]:
    """(the serialized engine, why) when the file at `path` was built for `key`; (None, why
    not) otherwise."""
    if not path.is_file():
        return None, f"no cached engine at {path}"
    data = path.read_bytes()
    start = len(MAGIC) + 8
    if not data.startswith(MAGIC) or len(data) < start:
        return None, f"{path} is not an engine written by this package"
    (length,) = struct.unpack("<Q", data[len(MAGIC):start])
    try:
        cached = EngineKey(**json.loads(data[start:start + length]))
    except (TypeError, ValueError) as error:
        return None, f"unreadable engine key in {path} ({error})"
    difference = key.mismatch(cached)
    if difference:
        return None, f"cached engine is stale: {difference}"
    return data[start + length:], f"cached engine {path} matches"


def gpu_identity(device: int) -> tuple[str, str]:
    """(name, compute capability "major.minor") of CUDA device `device`."""
    import torch

    if not torch.cuda.is_available():
        raise ConfigurationError("backend 'tensorrt' needs a CUDA GPU; none is visible")
    major, minor = torch.cuda.get_device_capability(device)
    return torch.cuda.get_device_name(device), f"{major}.{minor}"


def current_engine_key(onnx_path: Path, precision: str, profile: Profile,
                       device: int = 0) -> EngineKey:
    """The key for building `onnx_path` on CUDA device `device` with this TensorRT."""
    trt = import_tensorrt()
    return engine_key(onnx_path, precision, profile, trt.__version__, *gpu_identity(device))


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


def _attach_timing_cache(config, path: Path) -> None:
    """Reuse the timing cache at `path` when TensorRT accepts it, else start an empty one."""
    cache = config.create_timing_cache(path.read_bytes() if path.is_file() else b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        LOGGER.warning("timing cache %s does not fit this GPU or TensorRT; starting a new one",
                       path)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def _add_profile(builder, config, network, profile: Profile, onnx_path: Path) -> None:
    """One optimisation profile over every network input."""
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    if set(profile) != names:
        raise ConfigurationError(f"{onnx_path} has inputs {sorted(names)}; the profile names "
                                 f"{sorted(profile)}")
    optimization = builder.create_optimization_profile()
    for name, (low, opt, high) in profile.items():
        optimization.set_shape(name, tuple(low), tuple(opt), tuple(high))
    config.add_optimization_profile(optimization)


def _cuda_device(device: int):
    """The builder's device context (none where torch sees no GPU: the caller has already
    checked it exists)."""
    import torch

    return torch.cuda.device(device) if torch.cuda.is_available() else contextlib.nullcontext()


def build_engine(onnx_path: str | Path, precision: str, profile: Profile, device: int = 0,
                 force: bool = False) -> tuple[Path, bytes]:
    """The engine for `onnx_path` with `profile`: the cached one when its key matches, else
    built now; returns its path and the serialized engine."""
    onnx_path = Path(onnx_path)
    if precision not in PRECISIONS:
        raise ConfigurationError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not onnx_path.is_file():
        raise ConfigurationError(f"model file {onnx_path} does not exist")
    trt = import_tensorrt()
    key = current_engine_key(onnx_path, precision, profile, device)
    engine_path = engine_path_for(onnx_path, precision)
    engine, reason = read_engine(engine_path, key)
    if engine is not None and not force:
        LOGGER.info(reason)
        return engine_path, engine
    LOGGER.warning("building TensorRT engine (%s); this takes minutes", reason)
    with _cuda_device(device):
        engine = _build(trt, onnx_path, key, profile)
    write_engine(engine_path, key, engine)
    return engine_path, engine


def _build(trt, onnx_path: Path, key: EngineKey, profile: Profile) -> bytes:
    """Parse, configure and build on the current CUDA device; keeps the timing cache."""
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
    _add_profile(builder, config, network, profile, onnx_path)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConfigurationError(f"TensorRT failed to build an engine from {onnx_path}")
    timing_cache = config.get_timing_cache()
    if timing_cache is not None:
        write_atomically(timing_cache_path, bytes(timing_cache.serialize()))
    LOGGER.warning("built %s in %.0f s", onnx_path, time.perf_counter() - started)
    return bytes(serialized)
