"""SAM runner on ONNX Runtime: two sessions, CPU everywhere, CUDA with onnxruntime-gpu."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ood_perception.backends.onnxruntime import choose_providers, import_onnxruntime
from ood_perception.backends.sam import check_pair, checked_frames, empty_outputs, read_graph_info
from ood_perception.contract import (
    INPUT_NAME,
    SAM_BOX_BATCH_NAME,
    SAM_BOXES_NAME,
    SAM_DECODER_ROLE,
    SAM_EMBEDDINGS_NAME,
    SAM_ENCODER_ROLE,
    SAM_IOU_NAME,
    SAM_MASKS_NAME,
)
from ood_perception.errors import ConfigurationError
from ood_perception.models.sam.deploy import decoder_path_for


class OnnxRuntimeSamRunner:
    """Encoder graph `model_path` and the decoder graph beside it; host tensors in and out."""

    name = "onnxruntime"

    def __init__(self, model_path: str | Path, device: str = "cpu",
                 providers: list[str] | None = None, intra_op_threads: int = 0):
        ort = import_onnxruntime()
        path = Path(model_path)
        chosen, self.device = choose_providers(device, providers,
                                               ort.get_available_providers())
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.log_severity_level = 3
        self._encoder, self.info = self._open(ort, path, chosen, options, SAM_ENCODER_ROLE)
        self._decoder, decoder_info = self._open(ort, decoder_path_for(path), chosen, options,
                                                 SAM_DECODER_ROLE)
        check_pair(self.info, decoder_info, path)

    @staticmethod
    def _open(ort, path: Path, providers, options, role: str):
        if not path.is_file():
            raise ConfigurationError(f"SAM graph not found: {path}")
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as error:  # onnxruntime raises its own untyped errors
            first = (str(error).strip().splitlines() or [""])[0]
            raise ConfigurationError(f"{path} is not a loadable ONNX model: {first}") from error
        props = dict(session.get_modelmeta().custom_metadata_map)
        return session, read_graph_info(props, role, path)

    def encode(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        checked_frames(images, self.info)
        if isinstance(images, torch.Tensor):
            images = images.cpu().numpy()
        embeddings = self._encoder.run([SAM_EMBEDDINGS_NAME],
                                       {INPUT_NAME: np.ascontiguousarray(images)})[0]
        return torch.from_numpy(embeddings)

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor,
               box_batch_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if boxes.shape[0] == 0:
            return empty_outputs(self.info, "cpu")
        masks, iou = self._decoder.run([SAM_MASKS_NAME, SAM_IOU_NAME], {
            SAM_EMBEDDINGS_NAME: embeddings.cpu().float().numpy(),
            SAM_BOXES_NAME: boxes.cpu().float().numpy(),
            SAM_BOX_BATCH_NAME: box_batch_index.cpu().long().numpy()})
        return torch.from_numpy(masks), torch.from_numpy(iou)

    def close(self) -> None:
        self._encoder = self._decoder = None
