"""Outlier supervision for UEM training: negative objects, and pasting them into inlier images.

A negative set yields RGBA cut-outs (alpha 255 on the object). Sources: the synthetic
training anomaly families, a folder of cut-outs (RGBA PNGs, or `images/` + `masks/`), or
COCO-style instance annotations (polygons or RLE). `paste_objects` puts some onto an image
and returns the UEM target (0 inlier, 1 pasted object, 255 ignore), as the official
training does with COCO objects on Cityscapes (PEBAL's `mix_object`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ood_perception.contract import IGNORE_LABEL
from ood_perception.errors import ConfigurationError
from ood_perception.io.images import IMAGE_SUFFIXES, read_rgb
from ood_perception.synthetic.anomalies import families, make_cutout
from ood_perception.synthetic.scenes import paste

# COCO categories that are Cityscapes classes too: not outliers for a road-scene model.
COCO_INLIER_CATEGORIES = ("person", "bicycle", "car", "motorcycle", "bus", "train", "truck",
                          "traffic light", "stop sign")
MIN_CUTOUT_PIXELS = 64


class NegativeSet(Protocol):
    """Anything that hands out random RGBA cut-outs."""

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """RGBA uint8 [h, w, 4], alpha 255 on the object."""


class SyntheticNegatives:
    """Cut-outs of the synthetic families of one split (the demo uses "train")."""

    def __init__(self, split: str = "train"):
        self.families = families(split)

    def __len__(self) -> int:
        return len(self.families)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        family = self.families[int(rng.integers(len(self.families)))]
        height = 96
        return make_cutout(family, rng, height, int(height * rng.uniform(0.6, 1.8)))


def crop_to_object(rgba: np.ndarray) -> np.ndarray | None:
    """The cut-out cropped to its alpha's bounding box; None when (almost) empty."""
    solid = rgba[..., 3] >= 128
    if solid.sum() < MIN_CUTOUT_PIXELS:
        return None
    rows, cols = np.nonzero(solid.any(axis=1))[0], np.nonzero(solid.any(axis=0))[0]
    return rgba[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _rgba(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.concatenate([rgb, (mask > 0).astype(np.uint8)[..., None] * 255], axis=2)


class CutoutFolder:
    """RGBA PNGs in a folder, or `images/<stem>.*` with binary `masks/<stem>.png`; in memory."""

    def __init__(self, root: str | Path):
        root = Path(root)
        if not root.is_dir():
            raise ConfigurationError(f"cut-out folder {root} does not exist")
        if (root / "images").is_dir() and (root / "masks").is_dir():
            cutouts = [self._masked(p, root / "masks" / f"{p.stem}.png")
                       for p in sorted((root / "images").iterdir())
                       if p.suffix.lower() in IMAGE_SUFFIXES]
        else:
            cutouts = [self._rgba_png(p) for p in sorted(root.glob("*.png"))]
        self.cutouts = [c for c in cutouts if c is not None]
        if not self.cutouts:
            raise ConfigurationError(
                f"no usable cut-outs in {root}: expected RGBA PNGs (alpha = object) or "
                f"images/ + masks/ with at least {MIN_CUTOUT_PIXELS} object pixels each")

    @staticmethod
    def _rgba_png(path: Path) -> np.ndarray | None:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None or image.ndim != 3 or image.shape[2] != 4:
            raise ConfigurationError(f"{path} is not an RGBA PNG; give cut-outs with an alpha "
                                     "channel, or an images/ + masks/ folder")
        return crop_to_object(cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA))

    @staticmethod
    def _masked(image_path: Path, mask_path: Path) -> np.ndarray | None:
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise ConfigurationError(f"cut-out {image_path.name} has no mask {mask_path}")
        rgb = read_rgb(image_path)
        if mask.shape != rgb.shape[:2]:
            raise ConfigurationError(f"mask {mask_path} and image {image_path} sizes differ")
        return crop_to_object(_rgba(rgb, mask))

    def __len__(self) -> int:
        return len(self.cutouts)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return self.cutouts[int(rng.integers(len(self.cutouts)))]


def decode_rle(counts: str | Sequence[int], height: int, width: int) -> np.ndarray:
    """COCO run-length encoding (compressed string or list of counts) -> bool [height, width]."""
    if isinstance(counts, str):
        runs, index, data = [], 0, counts.encode("ascii")
        while index < len(data):
            value, shift, more = 0, 0, True
            while more:
                c = data[index] - 48
                value |= (c & 0x1F) << (5 * shift)
                more = bool(c & 0x20)
                index += 1
                shift += 1
                if not more and c & 0x10:
                    value |= -1 << (5 * shift)
            if len(runs) > 2:
                value += runs[-2]
            runs.append(value)
        counts = runs
    flat = np.zeros(height * width, bool)
    position = 0
    for i, run in enumerate(counts):
        if i % 2:
            flat[position:position + run] = True
        position += run
    if position != height * width:
        raise ConfigurationError(f"RLE covers {position} pixels, the mask has {height * width}")
    return flat.reshape(width, height).T


def decode_segmentation(segmentation, height: int, width: int) -> np.ndarray:
    """COCO `segmentation` (polygon list or RLE dict) -> bool [height, width]."""
    if isinstance(segmentation, list):
        mask = np.zeros((height, width), np.uint8)
        polygons = [np.asarray(p, np.float64).reshape(-1, 2) for p in segmentation if len(p) >= 6]
        cv2.fillPoly(mask, [np.round(p).astype(np.int32) for p in polygons], 1)
        return mask.astype(bool)
    if isinstance(segmentation, dict) and "counts" in segmentation:
        h, w = segmentation.get("size", (height, width))
        return decode_rle(segmentation["counts"], int(h), int(w))
    raise ConfigurationError(
        f"unsupported COCO segmentation of type {type(segmentation).__name__}")


class CocoInstances:
    """Object instances of a COCO-style `instances_*.json`, cut out of their images on demand."""

    def __init__(self, annotations: str | Path, images: str | Path,
                 exclude: Sequence[str] = COCO_INLIER_CATEGORIES, min_area: float = 1000.0):
        annotations, self.images = Path(annotations), Path(images)
        if not annotations.is_file():
            raise ConfigurationError(f"COCO annotation file {annotations} does not exist")
        if not self.images.is_dir():
            raise ConfigurationError(f"COCO image folder {self.images} does not exist")
        try:
            data = json.loads(annotations.read_text())
            excluded = {c["id"] for c in data.get("categories", []) if c["name"] in set(exclude)}
            files = {i["id"]: (i["file_name"], i["height"], i["width"]) for i in data["images"]}
            self.instances = [(files[a["image_id"]], a["segmentation"], a["bbox"])
                              for a in data["annotations"]
                              if not a.get("iscrowd", 0) and a.get("area", 0) >= min_area
                              and a["category_id"] not in excluded]
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigurationError(f"{annotations} is not a COCO instances file: "
                                     f"{type(error).__name__}: {error}") from error
        if not self.instances:
            raise ConfigurationError(f"{annotations} has no instances of area >= {min_area} "
                                     "outside the excluded categories")

    def __len__(self) -> int:
        return len(self.instances)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        for _ in range(10):
            (name, height, width), segmentation, bbox = self.instances[
                int(rng.integers(len(self.instances)))]
            rgb = read_rgb(self.images / name)
            mask = decode_segmentation(segmentation, rgb.shape[0], rgb.shape[1])
            x, y, w, h = (int(round(v)) for v in bbox)
            crop = crop_to_object(_rgba(rgb, mask)[max(y, 0):y + h + 1, max(x, 0):x + w + 1])
            if crop is not None:
                return crop
        raise ConfigurationError(f"COCO instances under {self.images} keep giving empty masks")


def _contact_shadow(rgb: np.ndarray, centre: tuple[float, float], width: float) -> None:
    shadow = np.zeros(rgb.shape[:2], np.float32)
    axes = (max(int(width * 0.6), 1), max(int(width * 0.08), 1))
    cv2.ellipse(shadow, (int(centre[0]), int(centre[1])), axes, 0, 0, 360, 0.6, -1)
    rgb *= 1.0 - shadow[..., None]


def paste_objects(rgb: np.ndarray, negatives: NegativeSet, rng: np.random.Generator,
                  count: int, road: np.ndarray | None = None,
                  ignore: np.ndarray | None = None, min_size: int = 12
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Paste `count` cut-outs; (image uint8, target uint8: 0 inlier, 1 object, 255 ignore).

    With a `road` mask (bool HxW) objects stand on the road and their width is a fraction
    of the road's width in that row (a perspective cue); without one they go anywhere in the
    lower two thirds, larger lower down. Objects are scaled up to at least `min_size` pixels
    on their shorter side. `ignore` pixels (e.g. void) become 255.
    """
    height, width = rgb.shape[:2]
    canvas = rgb.astype(np.float32)
    target = np.zeros((height, width), np.uint8)
    rows = np.nonzero(road.any(axis=1))[0] if road is not None else np.zeros(0, np.int64)
    for _ in range(count):
        cutout = negatives.sample(rng)
        aspect = cutout.shape[1] / cutout.shape[0]
        if rows.size:
            y = int(rows[int(rng.integers(rows.size))])
            xs = np.nonzero(road[y])[0]
            x = int(xs[int(rng.integers(xs.size))])
            obj_w = max(xs[-1] - xs[0] + 1, 1) * rng.uniform(0.06, 0.3)
            obj_h = obj_w / aspect
            _contact_shadow(canvas, (x, y), obj_w)
        else:
            y = int(rng.uniform(height / 3, height))
            obj_h = height * rng.uniform(0.05, 0.3) * (y / height)
            obj_w = obj_h * aspect
            x = int(rng.uniform(0, width))
        grow = max(min_size / max(min(obj_w, obj_h), 1e-6), 1.0)
        obj_w, obj_h = int(round(obj_w * grow)), int(round(obj_h * grow))
        paste(canvas, target, cutout, x - obj_w // 2, y - obj_h, obj_w, obj_h, 1)
    if ignore is not None:
        target[ignore & (target == 0)] = IGNORE_LABEL
    return np.clip(canvas, 0, 255).astype(np.uint8), target
