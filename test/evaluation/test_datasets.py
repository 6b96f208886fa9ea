"""Dataset readers on tiny generated copies of each published layout."""

import json

import cv2
import numpy as np
import pytest

from ood_perception.errors import ConfigurationError
from ood_perception.evaluation.datasets import (
    LabelSpec,
    detect_format,
    load_score_label,
    open_dataset,
    score_label_pairs,
)


def _write_image(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _write_label(path, raw, colour=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.dstack([raw] * 3) if colour else raw)


def _frame(value):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = value
    raw = np.zeros((6, 8), np.uint8)
    raw[1:3, 1:3] = 2
    raw[5] = 255
    return rgb, raw


def test_road_anomaly(tmp_path):
    for i, name in enumerate(["b.jpg", "a.jpg"]):
        rgb, raw = _frame(200 * i)
        _write_image(tmp_path / "frames" / name, rgb)
        _write_label(
            tmp_path / "frames" / f"{name[:-4]}.labels" / "labels_semantic.png", raw, True
        )
    (tmp_path / "frame_list.json").write_text(json.dumps(["b.jpg", "a.jpg"]))
    dataset = open_dataset(tmp_path)
    assert dataset.format == "road_anomaly" and len(dataset) == 2
    frames = list(dataset)
    assert [f[0] for f in frames] == ["a", "b"]
    name, rgb, label = frames[0]  # "a" was written with red 200
    assert rgb.shape == (6, 8, 3) and rgb[..., 0].mean() > 150  # RGB order kept
    assert label[1, 1] == 1 and label[0, 0] == 0 and label[5, 0] == 255


def test_fs_laf(tmp_path):
    rgb, raw = _frame(10)
    raw[raw == 2] = 1
    base = "04_Maurener_Weg_8_000000_000030_"
    _write_label(tmp_path / "fishyscapes_lostandfound" / f"0000_{base}labels.png", raw)
    _write_image(tmp_path / "laf_images" / f"{base}leftImg8bit.png", rgb)
    dataset = open_dataset(tmp_path, "auto")
    assert dataset.format == "fs_laf"
    ((_, image, label),) = list(dataset)
    assert label[1, 1] == 1 and label[5, 3] == 255 and image.shape == (6, 8, 3)


@pytest.mark.parametrize(
    "suffix,expected,track",
    [(".jpg", "smiyc_ra21", "anomaly"), (".webp", "smiyc_ro21", "obstacle")],
)
def test_smiyc_validation_frames_only(tmp_path, suffix, expected, track):
    rgb, raw = _frame(10)
    raw[raw == 2] = 1
    _write_image(tmp_path / "images" / f"validation_1{suffix}", rgb)
    _write_image(tmp_path / "images" / f"test_frame{suffix}", rgb)  # no public label
    _write_label(tmp_path / "labels_masks" / "validation_1_labels_semantic.png", raw)
    dataset = open_dataset(tmp_path)
    assert dataset.format == expected and dataset.track == track
    assert [name for name, _, _ in dataset] == ["validation_1"]


def test_folder_with_custom_values(tmp_path):
    rgb, _ = _frame(10)
    raw = np.full((6, 8), 7, np.uint8)
    raw[0, 0] = 9
    raw[1, 1] = 0
    _write_image(tmp_path / "images" / "x.png", rgb)
    _write_label(tmp_path / "labels" / "x_gt.png", raw)
    spec = LabelSpec(inlier=(7,), anomaly=(9,), ignore=(0,))
    ((_, _, label),) = list(open_dataset(tmp_path, "folder", spec, label_suffix="_gt"))
    assert label[0, 0] == 1 and label[1, 1] == 255 and label[3, 3] == 0
    with pytest.raises(ConfigurationError, match="not listed"):
        list(open_dataset(tmp_path, "folder", LabelSpec(), label_suffix="_gt"))


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigurationError, match="does not exist"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(ConfigurationError, match="cannot tell"):
        detect_format(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    _write_image(tmp_path / "images" / "a.png", _frame(1)[0])
    with pytest.raises(ConfigurationError, match="missing"):
        open_dataset(tmp_path)
    with pytest.raises(ConfigurationError, match="unknown dataset format"):
        open_dataset(tmp_path, "cityscapes")


def test_score_label_pairs(tmp_path):
    (tmp_path / "s").mkdir()
    np.save(tmp_path / "s" / "f1.npy", np.ones((6, 8), np.float64))
    _write_label(tmp_path / "l" / "f1.png", np.ones((6, 8), np.uint8))
    pairs = score_label_pairs(tmp_path / "s", tmp_path / "l")
    score, label = load_score_label(pairs[0][1], pairs[0][2], LabelSpec())
    assert score.dtype == np.float32 and label.sum() == 48
    np.save(tmp_path / "s" / "f2.npy", np.ones((6, 8), np.float32))
    with pytest.raises(ConfigurationError, match="no label"):
        score_label_pairs(tmp_path / "s", tmp_path / "l")
    np.save(tmp_path / "bad.npy", np.ones((5, 8), np.float32))
    with pytest.raises(ConfigurationError, match="differ"):
        load_score_label(tmp_path / "bad.npy", tmp_path / "l" / "f1.png", LabelSpec())


def test_duplicate_frame_names_are_refused(tmp_path):
    rgb, raw = _frame(10)
    _write_image(tmp_path / "images" / "a.png", rgb)
    _write_image(tmp_path / "images" / "a.jpg", rgb)
    _write_label(tmp_path / "labels" / "a.png", np.minimum(raw, 1))
    with pytest.raises(ConfigurationError, match=r"a\.jpg and .*a\.png are both frame 'a'"):
        open_dataset(tmp_path)


def _palette_label(path, raw, colours):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(raw, "P")
    image.putpalette([c for colour in colours for c in colour])
    image.save(path)


def test_folder_and_score_labels_read_palette_indices_and_refuse_colour(tmp_path):
    rgb, raw = _frame(10)
    raw = np.where(raw == 2, 1, raw).astype(np.uint8)
    colours = [(0, 0, 0), (255, 0, 0)] + [(255, 255, 255)] * 254  # anomaly drawn in red
    _write_image(tmp_path / "images" / "x.png", rgb)
    _palette_label(tmp_path / "labels" / "x.png", raw, colours)
    ((_, _, label),) = list(open_dataset(tmp_path, "folder"))
    assert label[1, 1] == 1 and label[0, 0] == 0 and label[5, 0] == 255
    np.save(tmp_path / "x.npy", np.zeros((6, 8), np.float32))
    _, label = load_score_label(tmp_path / "x.npy", tmp_path / "labels" / "x.png", LabelSpec())
    assert (label == 1).sum() == 4
    _write_label(tmp_path / "labels" / "x.png", raw, colour=True)
    with pytest.raises(ConfigurationError, match=r"x\.png is a RGB image; expected one channel"):
        list(open_dataset(tmp_path, "folder"))
    with pytest.raises(ConfigurationError, match="expected one channel"):
        load_score_label(tmp_path / "x.npy", tmp_path / "labels" / "x.png", LabelSpec())


def test_unreadable_score_maps_name_the_file(tmp_path):
    _write_label(tmp_path / "l.png", np.zeros((6, 8), np.uint8))
    np.save(tmp_path / "cut.npy", np.ones((6, 8), np.float32))
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-10])
    np.save(tmp_path / "objects.npy", np.array([None, 1.0], object), allow_pickle=True)
    np.savez(tmp_path / "archive.npz", score=np.ones((6, 8), np.float32))
    (tmp_path / "archive.npz").rename(tmp_path / "archive.npy")
    (tmp_path / "empty.npy").write_bytes(b"")
    np.save(tmp_path / "ints.npy", np.ones((6, 8), np.int32))
    for name in ("cut", "objects", "archive", "empty", "ints"):
        with pytest.raises(ConfigurationError, match=f"{name}.npy"):
            load_score_label(tmp_path / f"{name}.npy", tmp_path / "l.png", LabelSpec())


def test_label_values_in_two_roles_are_refused():
    with pytest.raises(ConfigurationError, match=r"\[1\] are listed as both anomaly and ignore"):
        LabelSpec(anomaly=(1,), ignore=(1, 255))
    with pytest.raises(ConfigurationError, match=r"\[0\] are listed as both inlier and anomaly"):
        LabelSpec(inlier=(0, 7), anomaly=(0,))


@pytest.mark.parametrize("listing", ["[\"a.jpg\"", "[1, 2]", "{\"a.jpg\": 1}", "null"])
def test_malformed_frame_list_names_the_file(tmp_path, listing):
    (tmp_path / "frames").mkdir()
    (tmp_path / "frame_list.json").write_text(listing)
    with pytest.raises(ConfigurationError, match="frame_list.json"):
        open_dataset(tmp_path)
