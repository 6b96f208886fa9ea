"""A tiny contract-following ONNX graph for tests: magenta pixels score high, grey low.

score = 3x3 mean of clamp(((R + B) / 2 - G) / 255, 0, 1), so a saturated magenta
square on grey scores ~1 inside and 0 a couple of pixels outside; semantic is 10 ("sky")
in the upper half and 0 ("road") in the lower half.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from ood_perception.contract import INPUT_NAME, SCORE_NAME, SEMANTIC_NAME, ModelInfo

ROAD_ID = 0
SKY_ID = 10


class TinyMagentaModel(nn.Module):
    """uint8 [B, H, W, 3] -> (float32 score [B, H, W], uint8 semantic [B, H, W])."""

    def __init__(self, input_size: tuple[int, int], with_semantic: bool = True):
        super().__init__()
        height, width = input_size
        self.with_semantic = with_semantic
        self.blur = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            self.blur.weight.fill_(1.0 / 9.0)
        rows = torch.arange(height).view(height, 1).expand(height, width)
        self.register_buffer("layout", torch.where(rows < height // 2, SKY_ID, ROAD_ID).float())

    def forward(self, image: torch.Tensor):
        rgb = image.float().permute(0, 3, 1, 2)  # TensorRT: a uint8 input feeds a Cast only
        magenta = ((rgb[:, 0:1] + rgb[:, 2:3]) * 0.5 - rgb[:, 1:2]) / 255.0
        score = self.blur(magenta.clamp(0.0, 1.0))[:, 0]
        if not self.with_semantic:
            return score
        # uint8 from float32, the one integer conversion TensorRT makes to uint8.
        semantic = self.layout.unsqueeze(0).expand(rgb.shape[0], -1, -1).to(torch.uint8)
        return score, semantic


def export_tiny_model(
    path: str | Path,
    input_size: tuple[int, int] = (64, 96),
    with_semantic: bool = True,
    with_metadata: bool = True,
    fixed_batch: int | None = None,
) -> Path:
    """Export the tiny model to `path` (dynamic batch unless `fixed_batch`); return the path."""
    path = Path(path)
    model = TinyMagentaModel(input_size, with_semantic).eval()
    batch = fixed_batch or 2
    dummy = torch.zeros((batch, *input_size, 3), dtype=torch.uint8)
    outputs = [SCORE_NAME, SEMANTIC_NAME] if with_semantic else [SCORE_NAME]
    dynamic_axes = None
    if fixed_batch is None:
        dynamic_axes = {name: {0: "batch"} for name in [INPUT_NAME, *outputs]}
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but exact here
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (dummy,), str(path), input_names=[INPUT_NAME], output_names=outputs,
            dynamic_axes=dynamic_axes, opset_version=17, dynamo=False,
        )
    graph = onnx.load(str(path))
    if with_metadata:
        info = ModelInfo(
            input_height=input_size[0], input_width=input_size[1], model_name="tiny_magenta",
            score_name="magenta", class_names=tuple(f"class{i}" for i in range(SKY_ID + 1)),
            mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0), score_range=(0.0, 1.0),
            producer="ood_perception test",
        )
        onnx.helper.set_model_props(graph, info.to_metadata())
    onnx.save(graph, str(path))
    return path
