"""Negative sets for UEM training: cut-out folders, COCO instances (polygons, RLE), pasting."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ood_perception.errors import ConfigurationError
from ood_perception.training.negatives import (
    CocoInstances,
    CutoutFolder,
    SyntheticNegatives,
    decode_rle,
    decode_segmentation,
    paste_objects,
)


def _encode_rle_string(mask: np.ndarray) -> str:
    """COCO's compressed RLE (maskApi.c rleToString), written out for the test."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    runs, value, count = [], 0, 0
    for pixel in flat:
        if pixel != value:
            runs.append(count)
            value, count = pixel, 0
        count += 1
    runs.append(count)
    out = []
    for i, run in enumerate(runs):
        x = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if c & 0x10 else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def test_rle_string_and_counts_decode_to_the_mask() -> None:
    rng = np.random.default_rng(1)
    mask = np.zeros((23, 31), bool)
    mask[3:17, 5:20] = True
    mask[rng.random(mask.shape) < 0.05] ^= True
    np.testing.assert_array_equal(decode_rle(_encode_rle_string(mask), 23, 31), mask)
    flat = mask.T.reshape(-1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat.astype(int), [0]])))
    counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if counts[-1] == 0:
        counts = counts[:-1]
    np.testing.assert_array_equal(decode_rle(counts, 23, 31), mask)
    with pytest.raises(ConfigurationError, match="covers"):
        decode_rle([5, 5], 23, 31)


def test_polygon_segmentation_fills_the_polygon() -> None:
    mask = decode_segmentation([[2, 2, 12, 2, 12, 8, 2, 8]], 10, 15)
    assert mask[5, 7] and not mask[0, 0] and mask.sum() == 11 * 7


def _coco(tmp_path, crowd: int = 0):
    images = tmp_path / "images"
    images.mkdir()
    rgb = np.full((40, 60, 3), 50, np.uint8)
    rgb[10:30, 20:40] = (200, 30, 30)
    cv2.imwrite(str(images / "a.jpg"), rgb[..., ::-1])
    polygon = [[20, 10, 39, 10, 39, 29, 20, 29]]
    data = {"images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 60}],
            "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "car"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "segmentation": polygon,
                 "area": 400, "bbox": [20, 10, 20, 20], "iscrowd": crowd},
                {"id": 2, "image_id": 1, "category_id": 2, "segmentation": polygon,
                 "area": 400, "bbox": [20, 10, 20, 20], "iscrowd": 0}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path, images


def test_coco_instances_skip_inlier_categories_and_cut_the_object(tmp_path) -> None:
    path, images = _coco(tmp_path)
    negatives = CocoInstances(path, images, min_area=100)
    assert len(negatives) == 1  # "car" is a Cityscapes class, not an outlier
    cutout = negatives.sample(np.random.default_rng(0))
    assert cutout.shape[:2] == (20, 20) and (cutout[..., 3] == 255).all()
    assert abs(int(cutout[10, 10, 0]) - 200) < 20


def test_coco_without_usable_instances_is_refused(tmp_path) -> None:
    path, images = _coco(tmp_path, crowd=1)
    with pytest.raises(ConfigurationError, match="no instances"):
        CocoInstances(path, images, exclude=("car",), min_area=100)


def test_cutout_folder_reads_rgba_pngs_and_image_mask_pairs(tmp_path) -> None:
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[5:15, 5:25] = (10, 200, 10, 255)
    (tmp_path / "rgba").mkdir()
    cv2.imwrite(str(tmp_path / "rgba" / "x.png"), rgba)
    assert CutoutFolder(tmp_path / "rgba").sample(np.random.default_rng(0)).shape == (10, 20, 4)
    pairs = tmp_path / "pairs"
    (pairs / "images").mkdir(parents=True)
    (pairs / "masks").mkdir()
    cv2.imwrite(str(pairs / "images" / "y.jpg"), np.full((20, 30, 3), 90, np.uint8))
    mask = np.zeros((20, 30), np.uint8)
    mask[2:12, 3:13] = 255
    cv2.imwrite(str(pairs / "masks" / "y.png"), mask)
    assert CutoutFolder(pairs).sample(np.random.default_rng(0)).shape == (10, 10, 4)
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(ConfigurationError, match="RGBA"):
        CutoutFolder(tmp_path)


def test_pasted_objects_are_labelled_where_the_image_changed() -> None:
    rgb = np.full((64, 128, 3), 100, np.uint8)
    road = np.zeros((64, 128), bool)
    road[32:, 20:108] = True
    ignore = np.zeros((64, 128), bool)
    ignore[-4:] = True
    rng = np.random.default_rng(3)
    image, target = paste_objects(rgb, SyntheticNegatives("train"), rng, 3, road, ignore)
    assert set(np.unique(target).tolist()) <= {0, 1, 255}
    assert (target == 1).sum() > 50
    count, blobs = cv2.connectedComponents((target == 1).astype(np.uint8))
    for blob in range(1, count):  # each object stands on a road row (just above its anchor)
        assert np.nonzero(blobs == blob)[0].max() >= 31
    assert (target[-4:][target[-4:] != 1] == 255).all()
    changed = np.abs(image.astype(int) - rgb).sum(axis=2) > 0
    assert changed[target == 1].mean() > 0.9
    untouched = target == 0
    assert changed[untouched].mean() < 0.2  # only contact shadows outside the objects
    empty_image, empty = paste_objects(rgb, SyntheticNegatives("train"), rng, 0)
    assert not empty.any() and np.array_equal(empty_image, rgb)
