"""Generated inputs of the fleet tests: labelled scenes, drives as bags, one corrupt bag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bag_files import write_images

from ood_perception.synthetic.scenes import (
    SceneConfig,
    make_scene,
    make_sequence,
    write_bag,
    write_frames,
)

SIZE = SceneConfig(height=64, width=96)
MAGENTA = (255, 0, 255)  # what the tiny test model scores high


def labelled_folder(root: Path, count: int = 6) -> Path:
    """A `folder` dataset of street scenes whose anomalies are painted magenta in most frames,
    so the tiny model finds some of them and misses others."""
    frames = []
    for seed in range(count):
        frame = make_scene(seed, SIZE, anomaly_split="heldout")
        if seed % 3:
            frame.rgb[frame.anomaly == 1] = MAGENTA
        frames.append(frame)
    write_frames(root, frames)
    return root


def drives(root: Path, frames: tuple[int, ...] = (4, 5, 3)) -> dict[str, int]:
    """Bags under `root`: synthetic drives (sqlite3, rgb8) and one MCAP drive of JPEG
    CompressedImages; bag folder -> image messages."""
    counts = {}
    for index, count in enumerate(frames):
        sequence = make_sequence(index + 1, frames=count, config=SIZE)
        for frame in sequence[::2]:
            frame.rgb[frame.anomaly == 1] = MAGENTA
        bag = root / f"drive{index}" / "bag"
        write_bag(bag, sequence, topic="/front/image_raw")
        counts[str(bag)] = count
    jpeg = root / "drive_mcap"
    rng = np.random.default_rng(5)
    images = []
    for i in range(3):
        rgb = np.full((48, 64, 3), 120, np.uint8)
        y, x = rng.integers(0, 30), rng.integers(0, 40)
        rgb[y:y + 14, x:x + 16] = MAGENTA
        images.append(("/side/image_raw/compressed", 1_700_000_000 * 10**9 + i * 10**8, rgb))
    write_images(jpeg, images, storage="mcap", compressed_format="jpeg")
    counts[str(jpeg)] = len(images)
    return counts


def corrupt_bag(path: Path) -> Path:
    """A drive whose storage file was cut in half (a copy that did not finish)."""
    rgb = np.full((48, 64, 3), 90, np.uint8)
    write_images(path, [("/front/image_raw", 10**18 + i * 10**8, rgb) for i in range(6)])
    data = next(path.glob("*.db3"))
    with open(data, "r+b") as stream:
        stream.truncate(data.stat().st_size // 2)
    return path
