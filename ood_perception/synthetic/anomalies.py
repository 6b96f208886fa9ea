"""Synthetic anomaly cut-outs: shape x texture families, split into training and held-out sets.

The two splits share no shape and no texture, so a model trained with the training
families as pseudo-outliers is evaluated on objects it has never seen in any form.
A cut-out is RGBA uint8 [h, w, 4]; alpha 255 marks the object, 0 the background.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from ood_perception.errors import ConfigurationError

TRAIN_SHAPES = ("box", "ellipse", "ring", "cross", "diamond", "hexagon", "capsule", "trapezoid")
HELDOUT_SHAPES = ("triangle", "star", "blob", "crescent")
TRAIN_TEXTURES = ("solid", "stripes", "gradient", "two_tone", "radial", "hatch", "waves")
HELDOUT_TEXTURES = ("checker", "dots", "noise")


@dataclass(frozen=True)
class AnomalyFamily:
    """One kind of object: a silhouette and a surface pattern (colours are drawn per object)."""

    shape: str
    texture: str

    @property
    def name(self) -> str:
        return f"{self.shape}/{self.texture}"


TRAIN_FAMILIES = tuple(AnomalyFamily(s, t) for s in TRAIN_SHAPES for t in TRAIN_TEXTURES)
HELDOUT_FAMILIES = tuple(AnomalyFamily(s, t) for s in HELDOUT_SHAPES for t in HELDOUT_TEXTURES)
FAMILY_SETS = {"train": TRAIN_FAMILIES, "heldout": HELDOUT_FAMILIES}


def families(split: str) -> tuple[AnomalyFamily, ...]:
    """The families of a split: "train" (outlier supervision) or "heldout" (evaluation)."""
    if split not in FAMILY_SETS:
        raise ConfigurationError(f"unknown anomaly family split {split!r}; choose from "
                                 f"{sorted(FAMILY_SETS)}")
    return FAMILY_SETS[split]


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated RGB colour (float 0-255): anomalies are not asphalt-grey by construction."""
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.35, 1.0), rng.uniform(0.3, 1.0))
    return np.array(rgb) * 255.0


# --- silhouettes: (rng, h, w) -> bool [h, w] --------------------------------------------------

def _poly(h: int, w: int, points: np.ndarray) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    pts = np.round(points * [w - 1, h - 1]).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in [-1, 1] (y, x)."""
    ys = (np.arange(h) + 0.5) / h * 2 - 1
    xs = (np.arange(w) + 0.5) / w * 2 - 1
    return np.meshgrid(ys, xs, indexing="ij")


def _box(rng, h, w):
    inset = rng.uniform(0.0, 0.15)
    top = rng.uniform(0.0, 0.2)
    return _poly(h, w, np.array([[inset, top], [1 - inset, 0.0], [1, 1], [0, 1]]))


def _ellipse(rng, h, w):
    y, x = _grid(h, w)
    return x**2 + y**2 <= 1.0


def _ring(rng, h, w):
    y, x = _grid(h, w)
    r2 = x**2 + y**2
    return (r2 <= 1.0) & (r2 >= rng.uniform(0.15, 0.45))


def _cross(rng, h, w):
    y, x = _grid(h, w)
    arm = rng.uniform(0.2, 0.4)
    return (np.abs(x) <= arm) | (np.abs(y) <= arm)


def _diamond(rng, h, w):
    mid = rng.uniform(0.35, 0.65)
    return _poly(h, w, np.array([[0.5, 0.0], [1.0, mid], [0.5, 1.0], [0.0, mid]]))


def _hexagon(rng, h, w):
    angles = np.arange(6) * np.pi / 3 + rng.uniform(0, np.pi / 3)
    return _poly(h, w, np.stack([0.5 + 0.5 * np.cos(angles), 0.5 + 0.5 * np.sin(angles)], 1))


def _capsule(rng, h, w):
    y, x = _grid(h, w)
    if rng.random() < 0.5:
        x, y = y, x
    body = (np.abs(x) <= 0.5) & (np.abs(y) <= 1.0)
    return body | ((np.abs(x) - 0.5) ** 2 * 4 + y**2 <= 1.0)


def _trapezoid(rng, h, w):
    top = rng.uniform(0.1, 0.3)
    return _poly(h, w, np.array([[top, 0.0], [1 - top, 0.0], [1.0, 1.0], [0.0, 1.0]]))


def _triangle(rng, h, w):
    apex = rng.uniform(0.2, 0.8)
    return _poly(h, w, np.array([[apex, 0.0], [1.0, 1.0], [0.0, 1.0]]))


def _star(rng, h, w):
    points = int(rng.integers(5, 8))
    angles = np.arange(2 * points) * np.pi / points + rng.uniform(0, np.pi)
    radii = np.where(np.arange(2 * points) % 2, rng.uniform(0.35, 0.55), 1.0)
    pts = np.stack([0.5 + 0.5 * radii * np.cos(angles), 0.5 + 0.5 * radii * np.sin(angles)], 1)
    return _poly(h, w, pts)


def _blob(rng, h, w):
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    harmonics = sum(rng.normal(0, 0.12) * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
                    for k in (2, 3, 5))
    radii = np.clip(0.75 + harmonics, 0.35, 1.0)
    pts = np.stack([0.5 + 0.5 * radii * np.cos(angles), 0.5 + 0.5 * radii * np.sin(angles)], 1)
    return _poly(h, w, pts)


def _crescent(rng, h, w):
    y, x = _grid(h, w)
    shift = rng.uniform(0.35, 0.7) * rng.choice([-1, 1])
    return (x**2 + y**2 <= 1.0) & ((x - shift) ** 2 + (y + 0.2) ** 2 > 0.8)


SHAPES: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "box": _box, "ellipse": _ellipse, "ring": _ring, "cross": _cross, "diamond": _diamond,
    "hexagon": _hexagon, "capsule": _capsule, "trapezoid": _trapezoid, "triangle": _triangle,
    "star": _star, "blob": _blob, "crescent": _crescent,
}


# --- surfaces: (rng, h, w) -> float RGB [h, w, 3] ---------------------------------------------

def _solid(rng, h, w):
    return np.broadcast_to(random_colour(rng), (h, w, 3)).copy()


def _stripes(rng, h, w):
    y, x = np.mgrid[0:h, 0:w]
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(4, 10)
    phase = (x * np.cos(angle) + y * np.sin(angle)) / period
    on = (np.floor(phase) % 2).astype(bool)[..., None]
    return np.where(on, random_colour(rng), random_colour(rng))


def _gradient(rng, h, w):
    t = np.linspace(0, 1, w)[None, :, None] if rng.random() < 0.5 else \
        np.linspace(0, 1, h)[:, None, None]
    return np.broadcast_to((1 - t) * random_colour(rng) + t * random_colour(rng),
                           (h, w, 3)).copy()


def _two_tone(rng, h, w):
    y, x = np.mgrid[0:h, 0:w]
    angle = rng.uniform(0, 2 * np.pi)
    side = ((x - w / 2) * np.cos(angle) + (y - h / 2) * np.sin(angle)) > 0
    return np.where(side[..., None], random_colour(rng), random_colour(rng))


def _radial(rng, h, w):
    y, x = _grid(h, w)
    t = np.clip(np.sqrt(x**2 + y**2), 0, 1)[..., None]
    return (1 - t) * random_colour(rng) + t * random_colour(rng)


def _hatch(rng, h, w):
    """Thin lines in two directions over a base colour: fine structure, unlike flat paint."""
    y, x = np.mgrid[0:h, 0:w]
    period, width = rng.uniform(4, 9), rng.uniform(1.0, 2.0)
    angle = rng.uniform(0, np.pi)
    lines = np.zeros((h, w), bool)
    for a in (angle, angle + rng.uniform(np.pi / 4, np.pi / 2)):
        lines |= (x * np.cos(a) + y * np.sin(a)) % period < width
    return np.where(lines[..., None], random_colour(rng), random_colour(rng))


def _waves(rng, h, w):
    y, x = np.mgrid[0:h, 0:w]
    period, bend = rng.uniform(5, 12), rng.uniform(2, 6)
    t = 0.5 + 0.5 * np.sin(2 * np.pi * (x + bend * np.sin(y / rng.uniform(4, 10))) / period)
    return (1 - t[..., None]) * random_colour(rng) + t[..., None] * random_colour(rng)


def _checker(rng, h, w):
    y, x = np.mgrid[0:h, 0:w]
    cell = rng.uniform(3, 8)
    on = ((np.floor(x / cell) + np.floor(y / cell)) % 2).astype(bool)[..., None]
    return np.where(on, random_colour(rng), random_colour(rng))


def _dots(rng, h, w):
    y, x = np.mgrid[0:h, 0:w]
    cell = rng.uniform(5, 10)
    radius = cell * rng.uniform(0.2, 0.35)
    dy, dx = y % cell - cell / 2, x % cell - cell / 2
    on = (dx**2 + dy**2 <= radius**2)[..., None]
    return np.where(on, random_colour(rng), random_colour(rng))


def _noise(rng, h, w):
    coarse = rng.random((max(2, h // 6), max(2, w // 6), 1)).astype(np.float32)
    t = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)[..., None]
    return (1 - t) * random_colour(rng) + t * random_colour(rng)


TEXTURES: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "solid": _solid, "stripes": _stripes, "gradient": _gradient, "two_tone": _two_tone,
    "radial": _radial, "hatch": _hatch, "waves": _waves, "checker": _checker, "dots": _dots,
    "noise": _noise,
}


def make_cutout(family: AnomalyFamily, rng: np.random.Generator, height: int,
                width: int) -> np.ndarray:
    """RGBA uint8 [height, width, 4] object of `family`, lit from above (top 15% brighter)."""
    height, width = max(int(height), 3), max(int(width), 3)
    mask = SHAPES[family.shape](rng, height, width)
    if not mask.any():
        mask[height // 2, width // 2] = True
    surface = TEXTURES[family.texture](rng, height, width)
    shade = np.linspace(1.15, 0.85, height)[:, None, None]
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[..., :3] = np.clip(surface * shade, 0, 255).astype(np.uint8)
    rgba[..., 3] = mask * 255
    return rgba

