"""A contract graph for ground-projection tests: the score is the pixel's brightness.

score = mean(R, G, B) / 255 in [0, 1] (score_range [0, 1], so the node's default threshold
is 0.5), no semantic output: a bright object on a dark road is the obstacle, and its mask
is exactly the bright pixels (up to the resize to the model's input).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from ood_perception.contract import INPUT_NAME, SCORE_NAME, ModelInfo


class Brightness(nn.Module):
    """uint8 [B, H, W, 3] -> float32 [B, H, W] brightness in [0, 1]."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.float().mean(dim=3) / 255.0


def export_brightness_model(path: str | Path, input_size: tuple[int, int] = (240, 320)) -> Path:
    """The graph at `input_size` (dynamic batch) with contract metadata; returns `path`."""
    path = Path(path)
    dummy = torch.zeros((1, *input_size, 3), dtype=torch.uint8)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but exact here
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(Brightness().eval(), (dummy,), str(path), input_names=[INPUT_NAME],
                          output_names=[SCORE_NAME], opset_version=17, dynamo=False,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, SCORE_NAME: {0: "batch"}})
    graph = onnx.load(str(path))
    info = ModelInfo(input_height=input_size[0], input_width=input_size[1],
                     model_name="brightness", score_name="brightness", class_names=(),
                     mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0), score_range=(0.0, 1.0),
                     producer="ood_perception test")
    onnx.helper.set_model_props(graph, info.to_metadata())
    onnx.save(graph, str(path))
    return path
