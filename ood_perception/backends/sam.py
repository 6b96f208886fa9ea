"""SAM runners for S2M refinement: the image encoder and the prompt-and-mask decoder graphs.

Every runtime offers the same two calls on torch tensors (host tensors for ONNX Runtime, device
tensors for torch and TensorRT): `encode` takes the contract's uint8 frames, `decode` any
number of boxes (with each box's frame index); zero boxes return empty outputs without running
the decoder. `create_sam_runner(kind, path)` opens the encoder graph `path` and the decoder
graph beside it (`models.sam.deploy.decoder_path_for`), or the `.pt` file for `torch`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ood_perception.contract import SAM_DECODER_ROLE, SAM_ENCODER_ROLE, SamGraphInfo
from ood_perception.errors import ConfigurationError

# kind -> (module, class), imported only when chosen.
SAM_RUNNERS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("ood_perception.backends.sam_onnxruntime", "OnnxRuntimeSamRunner"),
    "torch": ("ood_perception.backends.sam_torch", "TorchSamRunner"),
    "tensorrt": ("ood_perception.backends.sam_tensorrt", "TensorRTSamRunner"),
}


class SamRunner(Protocol):
    """SAM's two graphs in one runtime."""

    name: str
    device: str
    info: SamGraphInfo  # the encoder graph's metadata (input size, SAM's resized frame)

    def encode(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] RGB at `info.input_size` -> embeddings float32 [B, 256, g, g]."""
        ...

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor,
               box_batch_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings, float32 [N, 4] boxes in SAM's input frame, int64 [N] frame indices)
        -> (mask logits float32 [N, 1, 4g, 4g], IoU predictions float32 [N, 1])."""
        ...

    def close(self) -> None:
        ...


def create_sam_runner(kind: str, model_path: str | Path, **options) -> SamRunner:
    """Open SAM's graphs with the named runtime; a bad choice raises ConfigurationError."""
    if kind not in SAM_RUNNERS:
        raise ConfigurationError(f"unknown backend {kind!r} for SAM; choose one of: "
                                 f"{', '.join(sorted(SAM_RUNNERS))}")
    module_name, class_name = SAM_RUNNERS[kind]
    return getattr(importlib.import_module(module_name), class_name)(model_path, **options)


def read_graph_info(props: dict[str, str], role: str, path: Path) -> SamGraphInfo:
    """The `SamGraphInfo` of a graph's metadata, checked to be the expected role."""
    try:
        info = SamGraphInfo.from_metadata(props)
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigurationError(f"{path} is not an S2M graph written by `ood-perception export "
                                 f"--model sam-...` (metadata: {error})") from error
    if info.role != role:
        raise ConfigurationError(f"{path} is a {info.role} graph; expected {role}")
    return info


def check_pair(encoder: SamGraphInfo, decoder: SamGraphInfo, path: Path) -> None:
    """Refuse an encoder and decoder from different exports."""
    if (encoder.role, decoder.role) != (SAM_ENCODER_ROLE, SAM_DECODER_ROLE) or (
            encoder.model_name, encoder.embedding_size) != (decoder.model_name,
                                                            decoder.embedding_size):
        raise ConfigurationError(f"{path}: encoder {encoder.model_name} and decoder "
                                 f"{decoder.model_name} graphs do not belong together")


def checked_frames(images: np.ndarray | torch.Tensor, info: SamGraphInfo) -> None:
    """Refuse frames that are not uint8 [B, H, W, 3] at the encoder's input size."""
    expected = (*info.input_size, 3)
    uint8 = images.dtype in (np.uint8, torch.uint8)
    if not uint8 or images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ConfigurationError(f"SAM encoder input must be uint8 [B, {expected[0]}, "
                                 f"{expected[1]}, 3], got {images.dtype} {list(images.shape)}")


def empty_outputs(info: SamGraphInfo, device: torch.device | str) -> tuple[torch.Tensor,
                                                                            torch.Tensor]:
    """The decoder's outputs for zero boxes, without running it."""
    side = 4 * info.embedding_size
    return (torch.zeros((0, 1, side, side), device=device),
            torch.zeros((0, 1), device=device))
