"""Deformable attention with grid_sample equals a per-point bilinear loop."""

from __future__ import annotations

import math

import torch

from ood_perception.models.mask2former.ms_deform_attn import MSDeformAttn, ms_deform_attn_sample

SHAPES = ((4, 5), (3, 2), (1, 1))


def bilinear(image: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """image [D, H, W] at (x, y) in [0, 1] units: pixel (x*W - 0.5, y*H - 0.5), zeros outside."""
    _, height, width = image.shape
    px, py = x * width - 0.5, y * height - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(image.shape[0], dtype=torch.float64)
    for yi, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xi, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yi < height and 0 <= xi < width:
                out += wy * wx * image[:, yi, xi].double()
    return out


def naive(value: torch.Tensor, locations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    batch, _, heads, dim = value.shape
    _, queries, _, _, points, _ = locations.shape
    out = torch.zeros(batch, queries, heads, dim, dtype=torch.float64)
    starts = [0]
    for height, width in SHAPES:
        starts.append(starts[-1] + height * width)
    for n in range(batch):
        for q in range(queries):
            for m in range(heads):
                for lvl, (height, width) in enumerate(SHAPES):
                    image = value[n, starts[lvl]:starts[lvl + 1], m].T.reshape(dim, height, width)
                    for p in range(points):
                        x, y = locations[n, q, m, lvl, p].tolist()
                        out[n, q, m] += weights[n, q, m, lvl, p] * bilinear(image, x, y)
    return out.reshape(batch, queries, heads * dim)


def test_grid_sample_equals_per_point_bilinear_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    total = sum(h * w for h, w in SHAPES)
    value = torch.randn(2, total, 2, 3, generator=gen)
    # Locations up to 0.3 outside [0, 1] so border and outside samples are exercised.
    locations = torch.rand(2, 5, 2, len(SHAPES), 3, 2, generator=gen) * 1.6 - 0.3
    weights = torch.rand(2, 5, 2, len(SHAPES), 3, generator=gen)
    ours = ms_deform_attn_sample(value, SHAPES, locations, weights)
    expected = naive(value, locations, weights).float()
    assert ours.shape == (2, 5, 6)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_zero_offsets_at_pixel_centres_read_the_pixel() -> None:
    """Offsets 0, equal weights, reference at a pixel centre of one level: output = value there."""
    attn = MSDeformAttn(d_model=8, levels=1, heads=2, points=3)
    with torch.no_grad():
        for layer in (attn.sampling_offsets, attn.attention_weights):
            layer.weight.zero_()
            layer.bias.zero_()
    height, width = 3, 4
    values = torch.randn(1, height * width, 8)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    reference = torch.stack(((xs.flatten() + 0.5) / width, (ys.flatten() + 0.5) / height), -1)
    out = attn(values, reference[None, :, None], values, ((height, width),))
    expected = attn.output_proj(attn.value_proj(values))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_parameter_names_and_shapes_follow_detectron2() -> None:
    shapes = {k: tuple(v.shape) for k, v in MSDeformAttn(256, 3, 8, 4).state_dict().items()}
    assert shapes == {
        "sampling_offsets.weight": (192, 256), "sampling_offsets.bias": (192,),
        "attention_weights.weight": (96, 256), "attention_weights.bias": (96,),
        "value_proj.weight": (256, 256), "value_proj.bias": (256,),
        "output_proj.weight": (256, 256), "output_proj.bias": (256,),
    }
