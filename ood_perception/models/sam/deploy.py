"""SAM as two exportable graphs on the contract's uint8 frames, and the `.pt` file that rebuilds
them for the torch runtime.

`SamImageEncoderDeploy`: uint8 [B, H, W, 3] RGB frames at the anomaly graph's input size ->
image embeddings [B, 256, 64, 64], with segment-anything's preprocessing inside: longest side
to 1024 with antialiasing (within a grey level of the PIL resize its predictor uses; matrix
products, which every runtime runs), normalised, zero padding right and bottom.
`SamPromptDecoderDeploy`: embeddings, N boxes in SAM's input frame and the frame index of each
box -> N low-resolution mask logits [N, 1, 256, 256] and IoU predictions [N, 1]; N and B are
free, nothing depends on the data.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception import __version__
from ood_perception.contract import SamGraphInfo
from ood_perception.errors import ConfigurationError
from ood_perception.models.layers.resize import AntialiasedResize
from ood_perception.models.loading import load_strict
from ood_perception.models.sam.image_encoder import SamViTConfig
from ood_perception.models.sam.sam import SAM_MEAN_255, SAM_STD_255, Sam, SamConfig, resized_size
from ood_perception.models.sam.tiny_vit import TinyViTConfig

SAM_DEPLOY_FORMAT = "ood_perception.sam/1"


def graph_info(role: str, model_name: str, sam: Sam, input_size: tuple[int, int]) -> SamGraphInfo:
    """Metadata of an S2M graph for frames of `input_size` (export writes it, the torch
    runtime rebuilds it)."""
    resized = resized_size(*input_size, sam.cfg.img_size)
    return SamGraphInfo(role=role, model_name=model_name, input_height=input_size[0],
                        input_width=input_size[1], img_size=sam.cfg.img_size,
                        resized_height=resized[0], resized_width=resized[1],
                        embedding_size=sam.cfg.grid, producer=f"ood_perception {__version__}")


def decoder_path_for(encoder_path: str | Path) -> Path:
    """`sam.onnx` (the image encoder) -> `sam.decoder.onnx`: the prompt-and-mask graph."""
    path = Path(encoder_path)
    return path.with_name(f"{path.stem}.decoder{path.suffix or '.onnx'}")


def torch_path_for(encoder_path: str | Path) -> Path:
    """`sam.onnx` -> `sam.pt`, the file the torch runtime rebuilds both graphs from."""
    return Path(encoder_path).with_suffix(".pt")


class SamImageEncoderDeploy(nn.Module):
    """uint8 [B, H, W, 3] RGB -> float32 image embeddings [B, 256, g, g] (g = 64 for SAM)."""

    def __init__(self, sam: Sam, input_size: tuple[int, int]):
        super().__init__()
        self.image_encoder = sam.image_encoder
        self.img_size = sam.cfg.img_size
        self.input_size = tuple(input_size)
        self.resized = resized_size(*self.input_size, self.img_size)
        self.resize = (AntialiasedResize(self.input_size, self.resized)
                       if self.resized != self.input_size else None)
        self.register_buffer("mean", torch.tensor(SAM_MEAN_255).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(SAM_STD_255).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.float().permute(0, 3, 1, 2)  # TensorRT: a uint8 input feeds a Cast only
        if self.resize is not None:
            x = self.resize(x)
        x = (x - self.mean) / self.std
        x = F.pad(x, (0, self.img_size - self.resized[1], 0, self.img_size - self.resized[0]))
        return self.image_encoder(x)


class SamPromptDecoderDeploy(nn.Module):
    """(embeddings [B, 256, g, g], boxes float32 [N, 4] in SAM's input frame, box_batch_index
    int64 [N]) -> (low-res mask logits [N, 1, 4g, 4g], IoU predictions [N, 1])."""

    def __init__(self, sam: Sam):
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder

    def forward(self, image_embeddings: torch.Tensor, boxes: torch.Tensor,
                box_batch_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        per_box = image_embeddings.index_select(0, box_batch_index)
        sparse, dense = self.prompt_encoder(boxes)
        return self.mask_decoder(per_box, self.prompt_encoder.get_dense_pe(), sparse, dense)


def postprocess_masks(low_res: torch.Tensor, img_size: int, resized: tuple[int, int],
                      frame_size: tuple[int, int]) -> torch.Tensor:
    """Mask logits [N, 1, 4g, 4g] -> bool masks [N, h, w] at the frame's size: upsampled to
    SAM's input, cropped to the resized frame, resized to the frame, logit > 0
    (segment-anything `Sam.postprocess_masks` and `mask_threshold`)."""
    if low_res.shape[0] == 0:
        return torch.zeros((0, *frame_size), dtype=torch.bool, device=low_res.device)
    masks = F.interpolate(low_res.float(), (img_size, img_size), mode="bilinear",
                          align_corners=False)
    masks = masks[..., : resized[0], : resized[1]]
    masks = F.interpolate(masks, tuple(frame_size), mode="bilinear", align_corners=False)
    return masks[:, 0] > 0.0


def _config_dict(cfg: SamConfig) -> dict:
    kind = "tiny_vit" if isinstance(cfg.encoder, TinyViTConfig) else "vit"
    return {"encoder_kind": kind, **asdict(cfg)}


def _config_from_dict(values: dict) -> SamConfig:
    values = dict(values)
    kind = values.pop("encoder_kind")
    encoder_type = {"vit": SamViTConfig, "tiny_vit": TinyViTConfig}[kind]
    encoder = {k: tuple(v) if isinstance(v, list) else v for k, v in values.pop("encoder").items()}
    return SamConfig(encoder=encoder_type(**encoder), **values)


def save_sam_deploy(sam: Sam, model_name: str, input_size: tuple[int, int],
                    path: str | Path) -> Path:
    """Write `{format, model, config, input_size, state_dict}`, loadable with weights_only."""
    path = Path(path)
    torch.save({"format": SAM_DEPLOY_FORMAT, "model": model_name, "config": _config_dict(sam.cfg),
                "input_size": list(input_size),
                "state_dict": {k: v.detach().cpu() for k, v in sam.state_dict().items()}}, path)
    return path


def load_sam_deploy(path: str | Path) -> tuple[Sam, str, tuple[int, int]]:
    """(SAM, model name, graph input size) from a `.pt` written by `save_sam_deploy`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"SAM deploy file not found: {path} (write it with "
                                 "`ood-perception export --model sam-... --save-torch`)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != SAM_DEPLOY_FORMAT:
        raise ConfigurationError(f"{path} is not an {SAM_DEPLOY_FORMAT} file")
    sam = Sam(_config_from_dict(payload["config"]))
    load_strict(sam, payload["state_dict"], str(path))
    return sam.eval(), payload["model"], tuple(payload["input_size"])
