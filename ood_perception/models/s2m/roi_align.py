"""RoIAlign as detectron2's `ROIPooler` runs it (`ROIAlignV2`: torchvision `roi_align` with
aligned=True, adaptive sampling), in torch, and the FPN level each box is pooled from.

Each output bin averages a grid of ceil(box side / bins) x ceil(...) bilinear samples, which
differs per box, so boxes are pooled in groups of equal grid size. Samples outside [-1, size]
read 0; others clamp to the border.
"""

from __future__ import annotations

import torch

from ood_perception.models.s2m.box_ops import box_area

# Boxes pooled at once: bounds the [boxes, C, bins x grid, bins x grid] sample tensor.
CHUNK = 128


def assign_levels(boxes: torch.Tensor, min_level: int, max_level: int,
                  canonical_box_size: int = 224, canonical_level: int = 4) -> torch.Tensor:
    """FPN level index (0 = `min_level`) per box: canonical_level + log2(sqrt(area) / 224)."""
    sizes = torch.sqrt(box_area(boxes))
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_box_size + 1e-8))
    return torch.clamp(levels, min=min_level, max=max_level).to(torch.int64) - min_level


def _bilinear(feature: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """feature [C, H, W] sampled at y, x [R, P, Q] -> [R, C, P, Q] (torchvision's rules)."""
    _, height, width = feature.shape
    outside = (y < -1.0) | (y > height) | (x < -1.0) | (x > width)
    y, x = y.clamp(min=0), x.clamp(min=0)
    y_low, x_low = y.floor().long(), x.floor().long()
    y_top, x_top = y_low >= height - 1, x_low >= width - 1
    y_low, x_low = y_low.clamp(max=height - 1), x_low.clamp(max=width - 1)
    y = torch.where(y_top, y_low.to(y.dtype), y)
    x = torch.where(x_top, x_low.to(x.dtype), x)
    y_high = torch.where(y_top, y_low, y_low + 1)
    x_high = torch.where(x_top, x_low, x_low + 1)
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    flat = feature.reshape(feature.shape[0], -1)

    def at(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        index = (rows * width + cols).reshape(-1)
        return flat[:, index].reshape(feature.shape[0], *rows.shape).permute(1, 0, 2, 3)

    value = ((hy * hx)[:, None] * at(y_low, x_low) + (hy * lx)[:, None] * at(y_low, x_high)
             + (ly * hx)[:, None] * at(y_high, x_low) + (ly * lx)[:, None] * at(y_high, x_high))
    return torch.where(outside[:, None], torch.zeros_like(value), value)


def roi_align(feature: torch.Tensor, boxes: torch.Tensor, output_size: int,
              spatial_scale: float) -> torch.Tensor:
    """feature [C, H, W] (one image), boxes [R, 4] in image pixels -> [R, C, out, out]."""
    out = output_size
    result = feature.new_zeros((boxes.shape[0], feature.shape[0], out, out))
    if boxes.shape[0] == 0:
        return result
    start = boxes[:, :2] * spatial_scale - 0.5
    extent = boxes[:, 2:] * spatial_scale - 0.5 - start  # width, height (may be <= 0)
    grids = torch.ceil(extent / out).clamp(min=0).long()  # samples per bin along x, y
    keys = grids[:, 0] * 100_000 + grids[:, 1]
    for key in torch.unique(keys).tolist():
        grid_w, grid_h = divmod(int(key), 100_000)
        if grid_w == 0 or grid_h == 0:
            continue  # no samples: the bins stay 0, as torchvision's count of max(0, 1)
        members = torch.nonzero(keys == key)[:, 0]
        for chunk in members.split(CHUNK):
            bin_h = extent[chunk, 1] / out
            bin_w = extent[chunk, 0] / out
            steps_y = (torch.arange(out * grid_h, device=boxes.device) // grid_h,
                       torch.arange(out * grid_h, device=boxes.device) % grid_h)
            steps_x = (torch.arange(out * grid_w, device=boxes.device) // grid_w,
                       torch.arange(out * grid_w, device=boxes.device) % grid_w)
            y = (start[chunk, 1, None] + steps_y[0] * bin_h[:, None]
                 + (steps_y[1] + 0.5) * bin_h[:, None] / grid_h)
            x = (start[chunk, 0, None] + steps_x[0] * bin_w[:, None]
                 + (steps_x[1] + 0.5) * bin_w[:, None] / grid_w)
            samples = _bilinear(feature, y[:, :, None].expand(-1, -1, x.shape[1]),
                                x[:, None, :].expand(-1, y.shape[1], -1))
            samples = samples.reshape(len(chunk), -1, out, grid_h, out, grid_w)
            result[chunk] = samples.sum(dim=(3, 5)) / (grid_h * grid_w)
    return result
