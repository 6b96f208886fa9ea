"""SAM runner on PyTorch: both graphs rebuilt from the `.pt` file `export --save-torch` writes.

CPU or CUDA; fp32 (TF32 off on CUDA) or fp16/bf16 autocast, as the contract's torch backend
runs; the encoder replays a CUDA graph per batch size, the decoder (N varies) runs eagerly.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from ood_perception.backends.sam import checked_frames, empty_outputs
from ood_perception.backends.torch import CudaGraphRunner, check_target, precision_context
from ood_perception.contract import SAM_ENCODER_ROLE
from ood_perception.models.sam.deploy import (
    SamImageEncoderDeploy,
    SamPromptDecoderDeploy,
    graph_info,
    load_sam_deploy,
    torch_path_for,
)
from ood_perception.models.sam.sam import Sam


class TorchSamRunner:
    """`model_path`: the `.pt` file, or the encoder `.onnx` it sits beside."""

    name = "torch"

    def __init__(self, model_path: str | Path, device: str = "cpu", precision: str = "fp32",
                 cuda_graphs: bool = True):
        path = Path(model_path)
        sam, name, input_size = load_sam_deploy(path if path.suffix == ".pt"
                                                else torch_path_for(path))
        self._setup(sam, name, input_size, device, precision, cuda_graphs)

    @classmethod
    def from_model(cls, sam: Sam, model_name: str, input_size: tuple[int, int],
                   device: str = "cpu", precision: str = "fp32",
                   cuda_graphs: bool = True) -> TorchSamRunner:
        """A runner on a SAM in memory (benchmarks); it works on its own copy."""
        runner = cls.__new__(cls)
        runner._setup(copy.deepcopy(sam), model_name, input_size, device, precision,
                      cuda_graphs)
        return runner

    def _setup(self, sam: Sam, name: str, input_size: tuple[int, int], device: str,
               precision: str, cuda_graphs: bool) -> None:
        check_target(device, precision)
        self._device = torch.device(device)
        self.device = str(self._device)
        self.precision = precision
        self.info = graph_info(SAM_ENCODER_ROLE, name, sam, input_size)
        self._encoder = SamImageEncoderDeploy(sam, input_size).to(self._device).eval()
        self._decoder = SamPromptDecoderDeploy(sam).to(self._device).eval()
        self._graphs = (CudaGraphRunner(self._encode, self._device)
                        if cuda_graphs and self._device.type == "cuda" else None)

    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), precision_context(self._device, self.precision):
            return self._encoder(frames).float()

    def encode(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        checked_frames(images, self.info)
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        frames = images.to(self._device).contiguous()
        if self._graphs is None:
            return self._encode(frames)
        return self._graphs(frames).clone()

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor,
               box_batch_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if boxes.shape[0] == 0:
            return empty_outputs(self.info, self._device)
        with torch.no_grad(), precision_context(self._device, self.precision):
            masks, iou = self._decoder(embeddings.to(self._device),
                                       boxes.to(self._device, torch.float32),
                                       box_batch_index.to(self._device, torch.int64))
        return masks.float(), iou.float()

    def close(self) -> None:
        self._encoder = self._decoder = self._graphs = None
