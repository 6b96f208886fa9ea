"""The deploy model: uint8 RGB frames in, contract outputs out.

Every registry builder returns one; the ONNX exporter traces it and the torch backend runs
it, so it lives with the models, below both.
"""

from __future__ import annotations

import torch
from torch import nn

from ood_perception.contract import ModelInfo


class DeployModel(nn.Module):
    """uint8 RGB [B, H, W, 3] -> (anomaly_score float32 [B, H, W], semantic uint8 [B, H, W])."""

    def __init__(self, network: nn.Module, info: ModelInfo):
        super().__init__()
        self.network = network
        self.info = info
        self.register_buffer("mean", torch.tensor(info.mean).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("inv_std", 1.0 / torch.tensor(info.std).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (image.permute(0, 3, 1, 2).float() - self.mean) * self.inv_std
        score, classes = self.network(x)
        return score.float(), classes.to(torch.uint8)
