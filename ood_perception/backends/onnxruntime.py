"""ONNX Runtime backend: CPU everywhere, CUDA / TensorRT execution providers with onnxruntime-gpu.

The graph must follow the contract (`contract.py`); anything else is refused at load
time with one line saying what is wrong, so the node never starts half-built.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ood_perception.backends.base import BackendOutput
from ood_perception.backends.device import parse_device
from ood_perception.contract import INPUT_NAME, SCORE_NAME, SEMANTIC_NAME, ModelInfo
from ood_perception.errors import ConfigurationError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
# The contract allows int32 class ids too; they are cast to uint8 on the host.
SEMANTIC_TYPES = ("tensor(uint8)", "tensor(int32)", "tensor(int64)")


def import_onnxruntime():
    """The `onnxruntime` module, or a ConfigurationError saying how to get it."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ConfigurationError(
            f"backend 'onnxruntime' needs `pip install onnxruntime` (or onnxruntime-gpu): {error}"
        ) from error
    return onnxruntime


def choose_providers(
    device: str, providers: list[str] | None, available: list[str]
) -> tuple[list, str]:
    """(providers for InferenceSession, device label) for `device` "cpu" or "cuda[:N]"."""
    parsed = parse_device(device)
    if not parsed.is_cuda:
        chosen: list = list(providers or [CPU])
        label = "cpu"
    else:
        index = parsed.index or 0
        if CUDA not in available:
            raise ConfigurationError(
                f"device {device!r} needs onnxruntime-gpu with {CUDA}; this onnxruntime offers "
                f"{', '.join(available)} (pip install onnxruntime-gpu, or use device 'cpu')")
        options = {"device_id": index}
        names = providers or [CUDA, CPU]
        chosen = [(name, options) if name in (CUDA, TENSORRT) else name for name in names]
        label = f"cuda:{index}"
    missing = [name for name in (providers or []) if name not in available]
    if missing:
        raise ConfigurationError(
            f"execution provider(s) {', '.join(missing)} not offered by this onnxruntime "
            f"({', '.join(available)})")
    return chosen, label


class OnnxRuntimeBackend:
    """A contract ONNX graph in an onnxruntime session; splits batches for a fixed batch size."""

    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        device: str = "cpu",
        providers: list[str] | None = None,
        intra_op_threads: int = 0,
        spin_wait: bool = False,
    ):
        ort = import_onnxruntime()
        path = Path(model_path)
        if not path.is_file():
            raise ConfigurationError(f"model file not found: {path}")
        if intra_op_threads < 0:
            raise ConfigurationError(f"intra_op_threads must be >= 0, got {intra_op_threads}")
        session_providers, self.device = choose_providers(
            device, providers, ort.get_available_providers())
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        # onnxruntime's intra-op threads busy-wait between operators by default: CPU taken
        # from the DDS threads, camera drivers and other nodes on the same cores (a trivial
        # graph at 518x924 on the 2-core machine: 15.9 ms of CPU per 6.8 ms run spinning,
        # 3.1 ms per 4.3 ms run not). spin_wait=True restores it for a machine of its own.
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if spin_wait else "0")
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=session_providers)
        except Exception as error:  # onnxruntime raises its own untyped errors
            first_line = (str(error).strip().splitlines() or [""])[0]
            raise ConfigurationError(
                f"{path} is not a loadable ONNX model: {first_line}") from error
        # What runs the graph: ONNX Runtime falls back to CPU when a provider fails to load.
        self.providers = tuple(self._session.get_providers())
        self.info, self.fixed_batch = self._read_contract(path)
        self._outputs = [SCORE_NAME] + ([SEMANTIC_NAME] if self._has_semantic else [])

    def _read_contract(self, path: Path) -> tuple[ModelInfo, int | None]:
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
            names = [node.name for node in inputs]
            raise ConfigurationError(
                f"{path} does not follow the contract: expected one input {INPUT_NAME!r}, "
                f"found {names}")
        image = inputs[0]
        shape = list(image.shape)
        if image.type != "tensor(uint8)" or len(shape) != 4 or shape[3] != 3:
            raise ConfigurationError(
                f"{path} does not follow the contract: input {INPUT_NAME!r} must be uint8 "
                f"[B, H, W, 3], found {image.type} {shape}")
        outputs = {node.name: node.type for node in self._session.get_outputs()}
        if outputs.get(SCORE_NAME) != "tensor(float)":
            raise ConfigurationError(
                f"{path} does not follow the contract: needs a float32 output {SCORE_NAME!r}, "
                f"found {outputs}")
        if SEMANTIC_NAME in outputs and outputs[SEMANTIC_NAME] not in SEMANTIC_TYPES:
            raise ConfigurationError(
                f"{path} does not follow the contract: output {SEMANTIC_NAME!r} must be uint8 "
                f"(or int32/int64), found {outputs[SEMANTIC_NAME]}")
        self._has_semantic = SEMANTIC_NAME in outputs
        props = dict(self._session.get_modelmeta().custom_metadata_map)
        height, width = shape[1], shape[2]
        if not (isinstance(height, int) and isinstance(width, int)):
            try:
                height, width = int(props["input_height"]), int(props["input_width"])
            except (KeyError, ValueError) as error:
                raise ConfigurationError(
                    f"{path}: input size is dynamic ({shape}) and the metadata has no "
                    "input_height/input_width") from error
        try:
            info = ModelInfo.from_metadata(props, (height, width))
        except (ValueError, TypeError) as error:
            raise ConfigurationError(f"{path}: unreadable contract metadata: {error}") from error
        fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        return info, fixed_batch

    def run(self, images: np.ndarray) -> BackendOutput:
        """`images`: uint8 [B, H, W, 3] RGB at `info.input_size` -> outputs at that size."""
        expected = (*self.info.input_size, 3)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != expected:
            raise ConfigurationError(
                f"backend input must be uint8 [B, {expected[0]}, {expected[1]}, 3], got "
                f"{images.dtype} {list(images.shape)}")
        images = np.ascontiguousarray(images)
        if self.fixed_batch is None:
            return self._run_chunk(images)
        parts = [self._run_padded(images[start:start + self.fixed_batch])
                 for start in range(0, len(images), self.fixed_batch)]
        return BackendOutput(
            anomaly_score=np.concatenate([part.anomaly_score for part in parts]),
            semantic=(np.concatenate([part.semantic for part in parts])
                      if self._has_semantic else None),
        )

    def _run_padded(self, chunk: np.ndarray) -> BackendOutput:
        count = len(chunk)
        if count < self.fixed_batch:
            padding = np.repeat(chunk[-1:], self.fixed_batch - count, axis=0)
            chunk = np.concatenate([chunk, padding])
        output = self._run_chunk(chunk)
        semantic = output.semantic[:count] if output.semantic is not None else None
        return BackendOutput(anomaly_score=output.anomaly_score[:count], semantic=semantic)

    def _run_chunk(self, images: np.ndarray) -> BackendOutput:
        results = self._session.run(self._outputs, {INPUT_NAME: images})
        semantic = results[1].astype(np.uint8, copy=False) if self._has_semantic else None
        return BackendOutput(anomaly_score=results[0], semantic=semantic)

    def close(self) -> None:
        """Drop the session; onnxruntime frees its memory with it."""
        self._session = None
