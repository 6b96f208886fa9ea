"""Image files, folders and videos as RGB frames, for the tools that run without ROS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ood_perception.errors import ConfigurationError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")


def image_paths(folder: Path) -> list[Path]:
    """The image files directly in `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_rgb(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigurationError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def frame_sources(inputs: list[str]) -> list[tuple[str, Path]]:
    """(kind "image"/"video", path) for every input, folders expanded; checked up front."""
    sources = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            images = image_paths(path)
            if not images:
                raise ConfigurationError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                                         f"in folder {path}")
            sources += [("image", image) for image in images]
        elif not path.is_file():
            raise ConfigurationError(f"input not found: {path}")
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            sources.append(("video", path))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            sources.append(("image", path))
        else:
            raise ConfigurationError(f"{path}: not an image or video file (by its suffix)")
    return sources


def count_frames(sources: list[tuple[str, Path]]) -> int | None:
    """Frames in all sources (None when a video does not say), for progress bars."""
    total = 0
    for kind, path in sources:
        if kind == "image":
            total += 1
            continue
        capture = cv2.VideoCapture(str(path))
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        if frames <= 0:
            return None
        total += frames
    return total


def read_frames(sources: list[tuple[str, Path]]) -> Iterator[tuple[str, np.ndarray]]:
    """(unique output stem, RGB frame) in input order."""
    used: set[str] = set()

    def unique(stem: str) -> str:
        candidate, suffix = stem, 1
        while candidate in used:
            candidate, suffix = f"{stem}_{suffix}", suffix + 1
        used.add(candidate)
        return candidate

    for kind, path in sources:
        if kind == "image":
            yield unique(path.stem), read_rgb(path)
            continue
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise ConfigurationError(f"cannot open video {path}")
        index = 0
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield unique(f"{path.stem}_{index:06d}"), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise ConfigurationError(f"video {path} has no readable frames")


