"""SAM runner on TensorRT (>= 10 Python API): engines for both graphs, built and cached like the
contract's (`tensorrt.build_engine`), torch CUDA tensors as bindings on a torch stream.

The decoder engine has one optimisation profile for 1..`max_boxes` boxes over 1..`max_batch`
frames; more boxes run in chunks, zero boxes never reach it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ood_perception.backends.device import parse_device
from ood_perception.backends.sam import check_pair, checked_frames, empty_outputs, read_graph_info
from ood_perception.backends.tensorrt import _torch_dtype, build_engine, import_tensorrt
from ood_perception.contract import (
    INPUT_NAME,
    SAM_BOX_BATCH_NAME,
    SAM_BOXES_NAME,
    SAM_DECODER_ROLE,
    SAM_EMBEDDINGS_NAME,
    SAM_ENCODER_ROLE,
    SAM_IOU_NAME,
    SAM_MASKS_NAME,
    SamGraphInfo,
)
from ood_perception.errors import ConfigurationError
from ood_perception.models.sam.deploy import decoder_path_for

# Boxes per frame the decoder profile is tuned for (S2M rarely prompts more).
OPT_BOXES = 8


def decoder_shapes(info: SamGraphInfo, max_batch: int, max_boxes: int) -> dict:
    """The decoder engine's profile: input name -> (min, opt, max) shapes."""
    if max_batch < 1 or max_boxes < 1:
        raise ConfigurationError(f"max batch and max boxes must be >= 1, got {max_batch}, "
                                 f"{max_boxes}")
    grid = info.embedding_size
    opt = min(OPT_BOXES, max_boxes)
    return {SAM_EMBEDDINGS_NAME: ((1, 256, grid, grid), (1, 256, grid, grid),
                                  (max_batch, 256, grid, grid)),
            SAM_BOXES_NAME: ((1, 4), (opt, 4), (max_boxes, 4)),
            SAM_BOX_BATCH_NAME: ((1,), (opt,), (max_boxes,))}


def _graph_info(path: Path, role: str) -> SamGraphInfo:
    import onnx

    if not path.is_file():
        raise ConfigurationError(f"SAM graph not found: {path}")
    graph = onnx.load(str(path), load_external_data=False)
    return read_graph_info({p.key: p.value for p in graph.metadata_props}, role, path)


class _Engine:
    """One deserialized engine and its execution context; named torch tensors in and out."""

    def __init__(self, trt, path: Path, device: str):
        self._trt = trt
        self.device = device
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise ConfigurationError(f"TensorRT could not load {path}; delete it")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._outputs = [name for name in names if self._engine.get_tensor_mode(name)
                         == trt.TensorIOMode.OUTPUT]

    def _bind(self, name: str, tensor: torch.Tensor) -> None:
        if not self._context.set_tensor_address(name, tensor.data_ptr()):
            raise ConfigurationError(f"TensorRT rejected the address of tensor {name!r}")

    def run(self, stream: torch.cuda.Stream, feeds: dict[str, torch.Tensor]) -> dict:
        """Enqueue one execution on `stream`; the caller synchronises before reading."""
        outputs = {}
        with torch.cuda.stream(stream):
            for name, tensor in feeds.items():
                if not self._context.set_input_shape(name, tuple(tensor.shape)):
                    raise ConfigurationError(
                        f"engine does not take {name} of shape {tuple(tensor.shape)}")
                self._bind(name, tensor)
            for name in self._outputs:
                shape = tuple(self._context.get_tensor_shape(name))
                dtype = _torch_dtype(self._trt, self._engine.get_tensor_dtype(name))
                outputs[name] = torch.empty(shape, dtype=dtype, device=self.device)
                self._bind(name, outputs[name])
            if not self._context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
        return outputs


class TensorRTSamRunner:
    """Encoder graph `model_path` and the decoder graph beside it, as cached engines."""

    name = "tensorrt"

    def __init__(self, model_path: str | Path, device: str = "cuda", precision: str = "fp16",
                 max_batch: int = 1, max_boxes: int = 64, build_only: bool = False, **_unused):
        parsed = parse_device(device)
        if not parsed.is_cuda:
            raise ConfigurationError(f"backend 'tensorrt' runs on cuda, not {device!r}")
        index = parsed.index or 0
        encoder_path = Path(model_path)
        decoder_path = decoder_path_for(encoder_path)
        self.info = _graph_info(encoder_path, SAM_ENCODER_ROLE)
        check_pair(self.info, _graph_info(decoder_path, SAM_DECODER_ROLE), encoder_path)
        self.device = f"cuda:{index}"
        self.max_batch, self.max_boxes = max_batch, max_boxes
        encoder_engine = build_engine(encoder_path, precision, max_batch, index)
        decoder_engine = build_engine(decoder_path, precision, max_batch, index,
                                      shapes=decoder_shapes(self.info, max_batch, max_boxes))
        self._encoder = self._decoder = None
        if build_only:
            return
        trt = import_tensorrt()
        with torch.cuda.device(index):
            self._encoder = _Engine(trt, encoder_engine, self.device)
            self._decoder = _Engine(trt, decoder_engine, self.device)
        self._stream = torch.cuda.Stream(device=self.device)

    def _ready(self) -> None:
        if self._encoder is None:
            raise ConfigurationError("SAM runner was opened with build_only")

    def _enter(self, tensor: torch.Tensor) -> torch.Tensor:
        """A CUDA copy the engine's stream may read (made on, or waited for from, the caller's)."""
        tensor = tensor.to(self.device).contiguous()
        self._stream.wait_stream(torch.cuda.current_stream(tensor.device))
        return tensor

    def encode(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        self._ready()
        checked_frames(images, self.info)
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        frames = self._enter(images)
        chunks = [self._encoder.run(self._stream, {INPUT_NAME: frames[i:i + self.max_batch]})
                  for i in range(0, frames.shape[0], self.max_batch)]
        self._stream.synchronize()
        return torch.cat([chunk[SAM_EMBEDDINGS_NAME].float() for chunk in chunks])

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor,
               box_batch_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._ready()
        if boxes.shape[0] == 0:
            return empty_outputs(self.info, self.device)
        embeddings = self._enter(embeddings.float())
        boxes = self._enter(boxes.float())
        index = self._enter(box_batch_index.long())
        masks = torch.empty((boxes.shape[0], 1, 4 * self.info.embedding_size,
                             4 * self.info.embedding_size), device=self.device)
        iou = torch.empty((boxes.shape[0], 1), device=self.device)
        pending = []
        with torch.cuda.stream(self._stream):  # the chunks are cut on the engine's stream
            for first in range(0, embeddings.shape[0], self.max_batch):
                chosen = torch.nonzero((index >= first) & (index < first + self.max_batch))[:, 0]
                for start in range(0, chosen.numel(), self.max_boxes):
                    rows = chosen[start:start + self.max_boxes]
                    out = self._decoder.run(self._stream, {
                        SAM_EMBEDDINGS_NAME: embeddings[first:first + self.max_batch],
                        SAM_BOXES_NAME: boxes[rows].contiguous(),
                        SAM_BOX_BATCH_NAME: (index[rows] - first).contiguous()})
                    pending.append((rows, out))
        self._stream.synchronize()
        for rows, out in pending:
            masks[rows] = out[SAM_MASKS_NAME].float()
            iou[rows] = out[SAM_IOU_NAME].float()
        return masks, iou

    def close(self) -> None:
        self._encoder = self._decoder = None
