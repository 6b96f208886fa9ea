"""The deploy model: uint8 RGB frames in, contract outputs out.

Every registry builder returns one; the ONNX exporter traces it and the torch backend runs
it, so it lives with the models, below both.
"""

from __future__ import annotations

import torch
from torch import nn

from ood_perception.contract import ModelInfo


class DeployModel(nn.Module):
    """uint8 RGB [B, H, W, 3] -> (anomaly_score float32 [B, H, W], semantic uint8 [B, H, W]).

    `resize` (optional) maps the 0-255 image [B, 3, H, W] to the network's size before the
    normalisation, where an official test path resizes the uint8 image.
    """

    def __init__(self, network: nn.Module, info: ModelInfo, resize: nn.Module | None = None):
        super().__init__()
        self.network = network
        self.info = info
        self.resize = resize
        self.register_buffer("mean", torch.tensor(info.mean).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("inv_std", 1.0 / torch.tensor(info.std).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image.float().permute(0, 3, 1, 2)
        if self.resize is not None:
            x = self.resize(x)
        x = (x - self.mean) * self.inv_std
        score, classes = self.network(x)
        # Class ids reach uint8 through float32: TensorRT converts to uint8 from float32 or
        # float16 only (export/tensorrt_rules.py).
        return score.float(), classes.float().to(torch.uint8)
