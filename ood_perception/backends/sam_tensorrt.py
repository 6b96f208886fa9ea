"""SAM runner on TensorRT (>= 10 Python API): engines for both graphs, built and cached like the
contract's (backends/tensorrt_cache.py), run by the shared engine runner
(backends/tensorrt_engine.py) with torch CUDA tensors as bindings.

The decoder engine has one optimisation profile for 1..`max_boxes` boxes over 1..`max_batch`
frames; more boxes run in chunks, zero boxes never reach it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ood_perception.backends.device import parse_device
from ood_perception.backends.sam import check_pair, checked_frames, empty_outputs, read_graph_info
from ood_perception.backends.tensorrt_cache import build_engine, contract_profile, import_tensorrt
from ood_perception.backends.tensorrt_engine import load_engine_runner
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

# Boxes per frame the decoder profile is tuned for (S2M rarely prompts more), and the most
# one decoder call takes unless told.
OPT_BOXES = 8
DEFAULT_MAX_BOXES = 64


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


def build_sam_engines(model_path: str | Path, precision: str = "fp16", max_batch: int = 1,
                      device: int = 0, max_boxes: int | None = None,
                      force: bool = False) -> list[Path]:
    """The encoder and decoder engines of SAM's graphs for 1..`max_batch` frames and
    1..`max_boxes` boxes per decoder call (built now or found cached); their paths."""
    return [path for path, _ in _sam_engines(Path(model_path), precision, max_batch, device,
                                             max_boxes or DEFAULT_MAX_BOXES, force)[1:]]


def _sam_engines(encoder_path: Path, precision: str, max_batch: int, device: int,
                 max_boxes: int, force: bool = False):
    """(encoder graph info, (encoder engine path, bytes), (decoder engine path, bytes))."""
    decoder_path = decoder_path_for(encoder_path)
    info = _graph_info(encoder_path, SAM_ENCODER_ROLE)
    check_pair(info, _graph_info(decoder_path, SAM_DECODER_ROLE), encoder_path)
    encoder = build_engine(encoder_path, precision, contract_profile(encoder_path, max_batch),
                           device, force)
    decoder = build_engine(decoder_path, precision,
                           decoder_shapes(info, max_batch, max_boxes), device, force)
    return info, encoder, decoder


class TensorRTSamRunner:
    """Encoder graph `model_path` and the decoder graph beside it, as cached engines."""

    name = "tensorrt"

    def __init__(self, model_path: str | Path, device: str = "cuda", precision: str = "fp16",
                 max_batch: int = 1, max_boxes: int = DEFAULT_MAX_BOXES,
                 build_only: bool = False, **_unused):
        parsed = parse_device(device)
        if not parsed.is_cuda:
            raise ConfigurationError(f"backend 'tensorrt' runs on cuda, not {device!r}")
        index = parsed.index or 0
        self.device = f"cuda:{index}"
        self.max_batch, self.max_boxes = max_batch, max_boxes
        self.info, encoder, decoder = _sam_engines(Path(model_path), precision, max_batch,
                                                   index, max_boxes)
        self._encoder = self._decoder = None
        if build_only:
            return
        trt = import_tensorrt()
        self._encoder = load_engine_runner(trt, encoder[1], self.device, str(model_path))
        self._decoder = load_engine_runner(trt, decoder[1], self.device, str(model_path))

    def _ready(self) -> None:
        if self._encoder is None:
            raise ConfigurationError("SAM runner was opened with build_only")

    def encode(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        self._ready()
        checked_frames(images, self.info)
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        frames = images.to(self.device)
        chunks = [self._encoder.run({INPUT_NAME: frames[i:i + self.max_batch]})
                  for i in range(0, frames.shape[0], self.max_batch)]
        return torch.cat([chunk[SAM_EMBEDDINGS_NAME].float() for chunk in chunks])

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor,
               box_batch_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._ready()
        if boxes.shape[0] == 0:
            return empty_outputs(self.info, self.device)
        embeddings = embeddings.to(self.device, torch.float32)
        boxes = boxes.to(self.device, torch.float32)
        index = box_batch_index.to(self.device, torch.int64)
        masks = torch.empty((boxes.shape[0], 1, 4 * self.info.embedding_size,
                             4 * self.info.embedding_size), device=self.device)
        iou = torch.empty((boxes.shape[0], 1), device=self.device)
        # Frames in chunks of `max_batch`, each chunk's boxes in chunks of `max_boxes`; the
        # runner copies every chunk into its own aligned buffers.
        for first in range(0, embeddings.shape[0], self.max_batch):
            chosen = torch.nonzero((index >= first) & (index < first + self.max_batch))[:, 0]
            for start in range(0, chosen.numel(), self.max_boxes):
                rows = chosen[start:start + self.max_boxes]
                out = self._decoder.run({
                    SAM_EMBEDDINGS_NAME: embeddings[first:first + self.max_batch],
                    SAM_BOXES_NAME: boxes[rows], SAM_BOX_BATCH_NAME: index[rows] - first})
                masks[rows] = out[SAM_MASKS_NAME].float()
                iou[rows] = out[SAM_IOU_NAME].float()
        return masks, iou

    def close(self) -> None:
        for runner in (self._encoder, self._decoder):
            if runner is not None:
                runner.close()
        self._encoder = self._decoder = None
