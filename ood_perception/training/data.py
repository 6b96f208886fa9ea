"""Training data: labelled image folders, synthetic scenes, window crops, pasted outliers."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from tqdm import tqdm

from ood_perception.contract import CITYSCAPES_CLASSES, IGNORE_LABEL
from ood_perception.errors import ConfigurationError
from ood_perception.evaluation.datasets import read_label
from ood_perception.io.images import IMAGE_SUFFIXES, read_rgb
from ood_perception.training.negatives import NegativeSet, paste_objects

IGNORE = IGNORE_LABEL
# Held-out scene seeds start here; training scenes use seed * 1000003 + i.
VALIDATION_SEED = 900_000_000


class Samples(Protocol):
    """Indexable (rgb uint8 HxWx3, semantic uint8 HxW or None) pairs."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray | None]: ...


class FolderSamples:
    """Images (recursively) with optional Cityscapes train-id labels matched by file stem.

    An image `<key><image_suffix>.*` pairs with the label `<key><label_suffix>.png`, so
    Cityscapes works with `_leftImg8bit` / `_gtFine_labelTrainIds`.
    """

    def __init__(self, images: str | Path, labels: str | Path | None = None,
                 image_suffix: str = "", label_suffix: str = ""):
        images = Path(images)
        if not images.is_dir():
            raise ConfigurationError(f"image folder {images} does not exist")
        paths = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ConfigurationError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {images}")
        self.items: list[tuple[Path, Path | None]] = [(p, None) for p in paths]
        if labels is not None:
            labels = Path(labels)
            if not labels.is_dir():
                raise ConfigurationError(f"label folder {labels} does not exist")
            index = {p.stem: p for p in labels.rglob("*.png")}
            items, missing = [], []
            for path in paths:
                key = path.stem.removesuffix(image_suffix) + label_suffix
                (items if key in index else missing).append((path, index.get(key)))
            if missing:
                raise ConfigurationError(
                    f"{len(missing)} images have no label, e.g. {missing[0][0].name} (looked "
                    f"for {missing[0][0].stem.removesuffix(image_suffix) + label_suffix}.png "
                    f"under {labels}); check --image-suffix / --label-suffix")
            self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        image, label = self.items[index]
        rgb = read_rgb(image)
        if label is None:
            return rgb, None
        semantic = read_label(label)
        if semantic.shape != rgb.shape[:2]:
            raise ConfigurationError(f"label {label} and image {image} sizes differ")
        unknown = np.setdiff1d(np.unique(semantic), [*range(len(CITYSCAPES_CLASSES)), IGNORE])
        if unknown.size:
            raise ConfigurationError(
                f"label {label} has values {unknown[:5].tolist()} outside the train ids 0.."
                f"{len(CITYSCAPES_CLASSES) - 1} and {IGNORE} (Cityscapes labelIds instead of "
                "labelTrainIds?)")
        return rgb, semantic


def synthetic_samples(count: int, seed: int, size: tuple[int, int], anomaly_split=None,
                      progress: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` synthetic scenes (rgb, semantic) at `size`, seeds seed*1000003 + i."""
    from ood_perception.synthetic.scenes import SceneConfig, make_scene

    config = SceneConfig(height=size[0], width=size[1])
    frames = [make_scene(seed * 1_000_003 + i, config, anomaly_split)
              for i in tqdm(range(count), desc="synthetic scenes", disable=not progress,
                            leave=False)]
    return [(f.rgb, f.semantic) for f in frames]


def fit_window(rgb: np.ndarray, label: np.ndarray | None, window: tuple[int, int],
               rng: np.random.Generator, scale: tuple[float, float] = (1.0, 1.0)
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """Random-scale, random-crop (pad with void) and flip an image to the training window.

    At scale 1 the image height is scaled to the window height.
    """
    factor = window[0] / rgb.shape[0] * rng.uniform(*scale)
    size = (max(int(round(rgb.shape[1] * factor)), 1), max(int(round(rgb.shape[0] * factor)), 1))
    if size != (rgb.shape[1], rgb.shape[0]):
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
        if label is not None:
            label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
    pad_h, pad_w = max(window[0] - rgb.shape[0], 0), max(window[1] - rgb.shape[1], 0)
    if pad_h or pad_w:
        rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)))
        if label is not None:
            label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=IGNORE)
    top = int(rng.integers(rgb.shape[0] - window[0] + 1))
    left = int(rng.integers(rgb.shape[1] - window[1] + 1))
    rgb = rgb[top:top + window[0], left:left + window[1]]
    label = label[top:top + window[0], left:left + window[1]] if label is not None else None
    if rng.random() < 0.5:
        rgb = rgb[:, ::-1]
        label = label[:, ::-1] if label is not None else None
    return np.ascontiguousarray(rgb), None if label is None else np.ascontiguousarray(label)


def outlier_batch(samples: Samples, negatives: NegativeSet, rng: np.random.Generator,
                  window: tuple[int, int], batch_size: int, paste_prob: float,
                  max_objects: int, scale: tuple[float, float] = (1.0, 1.0),
                  min_size: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Inlier images with pasted negatives: (uint8 [B, H, W, 3], target uint8 [B, H, W])."""
    images, targets = [], []
    for _ in range(batch_size):
        rgb, semantic = fit_window(*samples[int(rng.integers(len(samples)))], window, rng, scale)
        count = int(rng.integers(1, max_objects + 1)) if rng.random() < paste_prob else 0
        road = semantic == 0 if semantic is not None and (semantic == 0).any() else None
        ignore = semantic == IGNORE if semantic is not None else None
        rgb, target = paste_objects(rgb, negatives, rng, count, road, ignore, min_size)
        images.append(rgb)
        targets.append(target)
    return np.stack(images), np.stack(targets)


def validation_frames(count: int, size: tuple[int, int], seed: int = VALIDATION_SEED) -> list:
    """Held-out synthetic scenes with unseen ("heldout") anomaly families, at `size`."""
    from ood_perception.synthetic.scenes import SceneConfig, make_scene

    config = SceneConfig(height=size[0], width=size[1])
    return [make_scene(seed + i, config, "heldout") for i in range(count)]
