"""A tiny S2M detector configuration and well-scaled random detectron2 weights, for tests."""

from __future__ import annotations

import torch

from ood_perception.models.backbones.resnet import ResNetConfig
from ood_perception.models.s2m.detector import DetectorConfig, ScoreBoxDetector

# R-50 depth at 1/16 width, small heads and proposal counts; detectron2's other settings.
TINY_DETECTOR = DetectorConfig(resnet=ResNetConfig(stem_out_channels=8, res2_out_channels=16),
                               fpn_channels=16, fc_dim=32, pre_nms_topk=48, post_nms_topk=24)


def random_detector(cfg: DetectorConfig = TINY_DETECTOR, seed: int = 0) -> ScoreBoxDetector:
    """Weights that keep activations in range and give varied boxes and class scores."""
    generator = torch.Generator().manual_seed(seed)
    model = ScoreBoxDetector(cfg).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            values = torch.randn(tensor.shape, generator=generator)
            if name.endswith("running_var"):
                values = 1.0 + 0.1 * values.abs()
            elif name.endswith("norm.weight"):
                values = 1.0 + 0.1 * values
            elif tensor.ndim == 1:
                values = 0.05 * values
            elif "anchor_deltas" in name or "bbox_pred" in name:
                values = 0.02 * values / tensor[0].numel() ** 0.5
            elif "cls_score" in name:
                values = 0.1 * values / tensor[0].numel() ** 0.5
            elif name.startswith("backbone.bottom_up.stem"):  # inputs are ~100 (mean-subtracted)
                values = 0.01 * values / tensor[0].numel() ** 0.5
            else:
                values = values / tensor[0].numel() ** 0.5
            tensor.copy_(values)
    return model


def score_map(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A smooth score map with a few blobs on a noisy floor (an energy-like scale)."""
    generator = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(),
                            indexing="ij")
    score = torch.randn(height, width, generator=generator) * 0.3 - 5.0
    for _ in range(3):
        cy, cx = torch.rand(2, generator=generator) * torch.tensor([height, width])
        radius = 6 + 10 * torch.rand(1, generator=generator)
        score += 8.0 * torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * radius ** 2))
    return score


def detectron2_state(model: ScoreBoxDetector) -> dict[str, torch.Tensor]:
    """The model's weights as detectron2 saves them."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
