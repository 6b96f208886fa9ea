"""Readers of labelled anomaly-segmentation datasets in their published layouts.

Every reader yields `(name, rgb uint8 HxWx3, label uint8 HxW)` with label 0 = inlier,
1 = anomaly, 255 = ignore, in a stable (sorted) order. Layouts follow the official loaders
(SMIYC `road_anomaly_benchmark/datasets/tracks.py`, UEM `datamodules/datasets/*.py`):

Format and layout under the root:
- `road_anomaly`: `frames/<fid>.jpg`, `frames/<fid>.labels/labels_semantic.png` (2 = anomaly)
- `fs_laf`: `fishyscapes_lostandfound/<nnnn>_<cs-name>_labels.png`,
  `laf_images/<cs-name>_leftImg8bit.png`
- `smiyc_ra21`: `images/<fid>.jpg`, `labels_masks/<fid>_labels_semantic.png` (labelled frames)
- `smiyc_ro21`: `images/<fid>.webp`, `labels_masks/<fid>_labels_semantic.png` (labelled frames)
- `folder`: `images/<stem>.*`, `labels/<stem><suffix>.png` (one channel: grey values or
  palette indices), values set by `LabelSpec`
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np

from ood_perception.contract import IGNORE_LABEL
from ood_perception.errors import ConfigurationError
from ood_perception.io.images import IMAGE_SUFFIXES, read_rgb

FORMATS = ("road_anomaly", "fs_laf", "smiyc_ra21", "smiyc_ro21", "folder")
IGNORE = IGNORE_LABEL


@dataclass(frozen=True)
class LabelSpec:
    """Which raw label values mean inlier / anomaly / ignore; other values are an error."""

    inlier: tuple[int, ...] = (0,)
    anomaly: tuple[int, ...] = (1,)
    ignore: tuple[int, ...] = (255,)
    strict: bool = True  # False: unlisted values become ignore

    def __post_init__(self) -> None:
        roles = {"inlier": self.inlier, "anomaly": self.anomaly, "ignore": self.ignore}
        for first, second in combinations(roles, 2):
            shared = sorted(set(roles[first]) & set(roles[second]))
            if shared:
                raise ConfigurationError(
                    f"label values {shared} are listed as both {first} and {second} "
                    f"(--{first}-values, --{second}-values); give each value one role"
                )

    def table(self) -> np.ndarray:
        """uint8[256] lookup from raw value to 0 / 1 / 255 (unlisted values -> 254 if strict)."""
        lut = np.full(256, 254 if self.strict else IGNORE, np.uint8)
        lut[list(self.ignore)] = IGNORE
        lut[list(self.inlier)] = 0
        lut[list(self.anomaly)] = 1
        return lut

    def convert(self, raw: np.ndarray, name: str) -> np.ndarray:
        label = self.table()[raw]
        if self.strict and (label == 254).any():
            unknown = sorted(set(np.unique(raw[label == 254]).tolist()))
            raise ConfigurationError(
                f"label {name} has values {unknown[:10]} that are not listed as inlier "
                f"{list(self.inlier)}, anomaly {list(self.anomaly)} or ignore "
                f"{list(self.ignore)}; set the label values to match the dataset"
            )
        return label


# road_anomaly: UEM maps 2 -> 1 and keeps 0 and 1; the rest (none in the release) is void
ROAD_ANOMALY_SPEC = LabelSpec(inlier=(0,), anomaly=(1, 2), ignore=(), strict=False)
BENCHMARK_SPEC = LabelSpec(strict=False)


def read_label(path: Path) -> np.ndarray:
    """A label PNG as HxW uint8 raw values (first = red channel of colour PNGs, as UEM reads)."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ConfigurationError(f"cannot read label {path}")
    if raw.ndim == 3:
        raw = raw[:, :, 2]  # BGR(A) order: index 2 is red
    if raw.dtype != np.uint8:
        raise ConfigurationError(f"label {path} is {raw.dtype}; expected 8-bit values")
    return raw


def read_index_label(path: Path) -> np.ndarray:
    """A one-channel label PNG as HxW uint8: grey values, or the indices of a palette PNG.

    Colour labels are refused: reading one channel of them would mistake colours for values.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            _check_label_mode(path, image.mode)
            return np.array(image.convert("L") if image.mode == "1" else image)
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot read label {path}: {error}") from error


def _check_label_mode(path: Path, mode: str) -> None:
    if mode.startswith(("I", "F")):
        raise ConfigurationError(f"label {path} has {mode} pixels; expected 8-bit values")
    if mode not in ("L", "P", "1"):
        raise ConfigurationError(
            f"label {path} is a {mode} image; expected one channel of label values "
            "(a greyscale or palette PNG)"
        )


@dataclass(frozen=True)
class Dataset:
    """A list of (name, image path, label path) plus how to read labels."""

    format: str
    root: Path
    items: tuple[tuple[str, Path, Path], ...]
    spec: LabelSpec
    track: str  # "anomaly" or "obstacle": SMIYC component-metric size thresholds

    def __len__(self) -> int:
        return len(self.items)

    def label(self, path: Path) -> np.ndarray:
        """One label converted to 0 / 1 / 255; `folder` labels are read as one channel."""
        raw = read_index_label(path) if self.format == "folder" else read_label(path)
        return self.spec.convert(raw, str(path))

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for name, image_path, label_path in self.items:
            image = read_rgb(image_path)
            label = self.label(label_path)
            if label.shape != image.shape[:2]:
                raise ConfigurationError(
                    f"{name}: label {label.shape} and image {image.shape[:2]} sizes differ"
                )
            yield name, image, label


def _images(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _road_anomaly(root: Path) -> list[tuple[str, Path, Path]]:
    frames = root / "frames"
    listing = root / "frame_list.json"
    if listing.is_file():
        paths = [frames / n for n in _frame_list(listing)]
    else:
        paths = _images(frames)
    return [(p.stem, p, frames / f"{p.stem}.labels" / "labels_semantic.png") for p in paths]


def _frame_list(listing: Path) -> list[str]:
    """The sorted frame file names of `frame_list.json`, which must be a JSON list of strings."""
    try:
        names = json.loads(listing.read_text())
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot read {listing}: {error}") from error
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigurationError(f"{listing} must be a JSON list of frame file names")
    return sorted(names)


def _fs_laf(root: Path) -> list[tuple[str, Path, Path]]:
    items = []
    for label in sorted((root / "fishyscapes_lostandfound").glob("*.png")):
        # "<4-digit index>_<cityscapes name>_labels.png" -> "<cityscapes name>_leftImg8bit.png"
        base = label.name[5 : -len("labels.png")]
        items.append((label.stem, root / "laf_images" / f"{base}leftImg8bit.png", label))
    return items


def _smiyc(root: Path) -> list[tuple[str, Path, Path]]:
    items = []
    for image in _images(root / "images"):
        label = root / "labels_masks" / f"{image.stem}_labels_semantic.png"
        if label.is_file():  # test frames have no public labels
            items.append((image.stem, image, label))
    return items


def _folder(root: Path, suffix: str) -> list[tuple[str, Path, Path]]:
    labels = root / "labels"
    return [(p.stem, p, labels / f"{p.stem}{suffix}.png") for p in _images(root / "images")]


def detect_format(root: Path) -> str:
    """Guess the layout from the folders present."""
    if (root / "frame_list.json").is_file() or (root / "frames").is_dir():
        return "road_anomaly"
    if (root / "fishyscapes_lostandfound").is_dir():
        return "fs_laf"
    if (root / "images").is_dir() and (root / "labels_masks").is_dir():
        webp = any(p.suffix.lower() == ".webp" for p in (root / "images").iterdir())
        return "smiyc_ro21" if webp or "obstacle" in root.name.lower() else "smiyc_ra21"
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return "folder"
    raise ConfigurationError(
        f"cannot tell the layout of {root}: expected frames/ (road_anomaly), "
        "fishyscapes_lostandfound/ (fs_laf), images/ + labels_masks/ (smiyc_*) or "
        "images/ + labels/ (folder); or pass --dataset-format"
    )


def open_dataset(
    root: str | Path,
    fmt: str = "auto",
    spec: LabelSpec | None = None,
    label_suffix: str = "",
) -> Dataset:
    """A dataset reader; `spec` and `label_suffix` apply to the `folder` format only."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigurationError(f"dataset folder {root} does not exist")
    if fmt == "auto":
        fmt = detect_format(root)
    if fmt not in FORMATS:
        raise ConfigurationError(f"unknown dataset format {fmt!r}; choose from {FORMATS}")
    try:
        if fmt == "road_anomaly":
            items, spec_used = _road_anomaly(root), ROAD_ANOMALY_SPEC
        elif fmt == "fs_laf":
            items, spec_used = _fs_laf(root), BENCHMARK_SPEC
        elif fmt in ("smiyc_ra21", "smiyc_ro21"):
            items, spec_used = _smiyc(root), BENCHMARK_SPEC
        else:
            items, spec_used = _folder(root, label_suffix), spec or LabelSpec()
    except (FileNotFoundError, NotADirectoryError) as error:
        raise ConfigurationError(f"{root} is not a {fmt} dataset: {error}") from error
    missing = [str(p) for _, image, label in items for p in (image, label) if not p.is_file()]
    if missing:
        raise ConfigurationError(
            f"{len(missing)} files of {fmt} dataset missing, e.g. {missing[0]}"
        )
    if not items:
        raise ConfigurationError(f"no labelled frames found in {root} ({fmt} layout)")
    _check_unique_names(items)
    track = "obstacle" if fmt == "smiyc_ro21" else "anomaly"
    return Dataset(fmt, root, tuple(items), spec_used, track)


def _check_unique_names(items: list[tuple[str, Path, Path]]) -> None:
    """Frames are keyed by name (score caches, reports): two images of one name are refused."""
    seen: dict[str, Path] = {}
    for name, image, _ in items:
        if name in seen:
            raise ConfigurationError(
                f"{seen[name]} and {image} are both frame {name!r}; keep one of them"
            )
        seen[name] = image


def score_label_pairs(
    scores_dir: str | Path,
    labels_dir: str | Path,
    spec: LabelSpec | None = None,
    label_suffix: str = "",
) -> list[tuple[str, Path, Path]]:
    """Precomputed `.npy` score maps matched to label PNGs by file stem (+ `label_suffix`)."""
    scores_dir, labels_dir = Path(scores_dir), Path(labels_dir)
    for folder in (scores_dir, labels_dir):
        if not folder.is_dir():
            raise ConfigurationError(f"folder {folder} does not exist")
    scores = sorted(scores_dir.glob("*.npy"))
    if not scores:
        raise ConfigurationError(f"no .npy score maps in {scores_dir}")
    pairs, missing = [], []
    for path in scores:
        label = labels_dir / f"{path.stem}{label_suffix}.png"
        (pairs if label.is_file() else missing).append((path.stem, path, label))
    if missing:
        raise ConfigurationError(
            f"{len(missing)} score maps have no label, e.g. {missing[0][2]} for {missing[0][1]}"
        )
    return pairs


def load_score_label(
    score_path: Path, label_path: Path, spec: LabelSpec
) -> tuple[np.ndarray, np.ndarray]:
    """One (score float32 HxW, label uint8 HxW) pair, validated."""
    score = _read_score(score_path)
    if score.ndim == 3 and score.shape[0] == 1:
        score = score[0]
    if score.ndim != 2 or not np.issubdtype(score.dtype, np.floating):
        raise ConfigurationError(
            f"{score_path}: expected a 2-D float score map, got {score.dtype} {score.shape}"
        )
    label = spec.convert(read_index_label(label_path), str(label_path))
    if label.shape != score.shape:
        raise ConfigurationError(
            f"{score_path.name}: score {score.shape} and label {label.shape} sizes differ"
        )
    return score.astype(np.float32, copy=False), label


def _read_score(path: Path) -> np.ndarray:
    """A `.npy` array; unreadable files and `.npz` archives are the user's to fix."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ConfigurationError(f"cannot read score map {path}: {error}") from error
    if not isinstance(loaded, np.ndarray):
        loaded.close()
        raise ConfigurationError(f"score map {path} is an .npz archive; expected one .npy array")
    return loaded
