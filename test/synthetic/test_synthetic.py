"""Synthetic scenes: deterministic, labels consistent, anomaly families split cleanly."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ood_perception.cli.main import COMMANDS, main
from ood_perception.contract import CITYSCAPES_CLASSES
from ood_perception.core.ground import CameraModel, CameraPose, ground_points
from ood_perception.errors import ConfigurationError
from ood_perception.evaluation.datasets import open_dataset
from ood_perception.io.rosbag import read_images
from ood_perception.synthetic import scenes as synthetic
from ood_perception.synthetic.anomalies import (
    HELDOUT_FAMILIES,
    TRAIN_FAMILIES,
    families,
    make_cutout,
)

SMALL = synthetic.SceneConfig(height=112, width=224)


@pytest.fixture(autouse=True)
def make_scenes_command(monkeypatch):
    """The command as cli.COMMANDS registers it."""
    monkeypatch.setitem(COMMANDS, "make-scenes", ("make_scenes", "synthetic road scenes"))


def test_same_seed_same_scene_other_seed_other_scene() -> None:
    a = synthetic.make_scene(3, SMALL, "heldout")
    b = synthetic.make_scene(3, SMALL, "heldout")
    c = synthetic.make_scene(4, SMALL, "heldout")
    for field in ("rgb", "semantic", "anomaly"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.families == b.families
    assert not np.array_equal(a.rgb, c.rgb)


def test_labels_are_valid_classes_and_anomalies_stand_on_the_road() -> None:
    classes = set()
    anomaly_frames = 0
    for seed in range(12):
        frame = synthetic.make_scene(seed, SMALL, "heldout", anomalies=(1, 2))
        values = set(np.unique(frame.semantic).tolist())
        assert values <= set(range(len(CITYSCAPES_CLASSES))) | {255}
        assert set(np.unique(frame.anomaly).tolist()) <= {0, 1, 255}
        anomaly = frame.anomaly == 1
        # anomaly pixels are void in the semantic map, void pixels ignored in the anomaly map
        assert (frame.semantic[anomaly] == 255).all()
        assert (frame.anomaly[(frame.semantic == 255) & ~anomaly] == 255).all()
        if anomaly.any():
            anomaly_frames += 1
            assert frame.families and all(f in {x.name for x in HELDOUT_FAMILIES}
                                          for f in frame.families)
            # each obstacle's lowest pixels touch road (its contact with the ground)
            count, blobs = cv2.connectedComponents(anomaly.astype(np.uint8))
            for blob in range(1, count):
                rows, cols = np.nonzero(blobs == blob)
                bottom = rows.max()
                below = frame.semantic[min(bottom + 2, SMALL.height - 1),
                                       cols[rows == bottom]]
                assert (below == 0).any() or bottom >= SMALL.height - 3
        classes |= values
    assert anomaly_frames >= 10
    # a street has the main classes of a road scene
    assert {0, 1, 2, 8, 10, 13} <= classes


def test_train_and_heldout_families_share_no_shape_or_texture() -> None:
    assert {f.shape for f in TRAIN_FAMILIES}.isdisjoint({f.shape for f in HELDOUT_FAMILIES})
    assert {f.texture for f in TRAIN_FAMILIES}.isdisjoint(
        {f.texture for f in HELDOUT_FAMILIES})
    frame = synthetic.make_scene(5, SMALL, "train", anomalies=(3, 3))
    assert frame.families and set(frame.families) <= {f.name for f in families("train")}


def test_every_family_makes_a_non_empty_cut_out() -> None:
    rng = np.random.default_rng(0)
    for family in TRAIN_FAMILIES + HELDOUT_FAMILIES:
        cutout = make_cutout(family, rng, 40, 60)
        assert cutout.shape == (40, 60, 4)
        coverage = (cutout[..., 3] == 255).mean()
        assert coverage > 0.1
        assert coverage < 1.0 or family.shape == "box"


def test_scene_without_anomalies_has_none() -> None:
    frame = synthetic.make_scene(1, SMALL)
    assert not (frame.anomaly == 1).any() and frame.families == ()


def test_sequence_drives_forward_toward_the_obstacles() -> None:
    frames = synthetic.make_sequence(2, frames=6, config=SMALL, speed=10.0)
    areas = [(f.anomaly == 1).sum() for f in frames]
    assert areas[0] > 0
    assert areas[-1] > areas[0]  # closer obstacles look larger
    assert not np.array_equal(frames[0].rgb, frames[-1].rgb)


def test_make_scenes_writes_the_evaluate_layout(tmp_path) -> None:
    code = main(["make-scenes", "--output", str(tmp_path), "--count", "3", "--seed", "1",
                 "--size", "112x224"])
    assert code == 0
    dataset = open_dataset(tmp_path)
    assert len(dataset) == 3
    for name, rgb, label in dataset:
        assert rgb.shape == (112, 224, 3) and label.shape == (112, 224)
        semantic = cv2.imread(str(tmp_path / "semantic" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert semantic.shape == label.shape


def test_make_scenes_bag_has_stamped_frames_matching_the_labels(tmp_path) -> None:
    code = main(["make-scenes", "--output", str(tmp_path), "--count", "4", "--seed", "2",
                 "--size", "112x224", "--bag", "--fps", "5", "--encoding", "bgr8"])
    assert code == 0
    listing = json.loads((tmp_path / "sequence.json").read_text())
    messages = list(read_images(tmp_path / "bag"))
    assert len(messages) == 4 == len(listing["frames"])
    for message, entry in zip(messages, listing["frames"], strict=True):
        assert message.encoding == "bgr8" and (message.height, message.width) == (112, 224)
        stamp = message.stamp[0] * 10**9 + message.stamp[1]
        assert stamp == entry["stamp_ns"] == message.timestamp
        image = cv2.imread(str(tmp_path / "images" / f"{entry['name']}.png"))
        np.testing.assert_array_equal(message.data.reshape(112, 224, 3), image)
    gaps = np.diff([e["stamp_ns"] for e in listing["frames"]])
    assert (gaps == 200_000_000).all()
    calibration = listing["calibration"]
    assert calibration["size"] == [112, 224] and calibration["extrinsics"][2] == 1.4
    assert calibration["k"][0] == pytest.approx(0.8 * 224) and calibration["k"][2] == 111.5
    assert any(entry["obstacles"] for entry in listing["frames"])
    assert set(listing["frames"][0]["obstacles"][0]) == {
        "index", "family", "distance", "lateral", "width", "bbox", "pixels"}


def test_calibration_maps_the_ground_where_the_renderer_draws_it() -> None:
    """K and the extrinsics project a ground point where the renderer paints it (the
    renderer's pixel edges are integers, OpenCV's centres are)."""
    world = synthetic.sequence_world(7, 30)
    calibration = world.calibration
    camera = CameraModel(calibration.k, (), "plumb_bob", calibration.size)
    pose = CameraPose.from_extrinsics(calibration.extrinsics)
    scene = world.camera()
    for ahead, left in ((5.0, 0.0), (12.0, 2.0), (40.0, -3.0)):
        optical = (np.array([[ahead, left, 0.0]]) - pose.origin) @ pose.matrix
        (pixel,) = camera.project(optical)
        right = -left - scene.curvature * ahead * ahead  # the renderer's road-bent lateral
        assert pixel[1] == pytest.approx(scene.y(0.0, ahead) - 0.5)
        assert pixel[0] == pytest.approx(scene.x(right, ahead) - 0.5)
        (ground,) = ground_points(camera, pose, pixel[None])
        np.testing.assert_allclose(ground, [ahead, left], atol=1e-9)


def test_each_obstacles_truth_matches_its_pixels() -> None:
    frames = synthetic.make_sequence(7, 30)
    for frame in frames[::6]:
        owned = 0
        for obstacle in frame.obstacles:
            x, y, width, height = obstacle.bbox
            assert obstacle.pixels <= int((frame.anomaly[y:y + height, x:x + width] == 1).sum())
            owned += obstacle.pixels
        assert owned == int((frame.anomaly == 1).sum())


def test_obstacles_keep_their_index_and_come_closer_as_the_car_drives() -> None:
    frames = synthetic.make_sequence(7, 30)
    first, last = frames[0].obstacles, frames[-1].obstacles
    common = {o.index for o in first} & {o.index for o in last}
    assert common
    for index in common:
        a = next(o for o in first if o.index == index)
        b = next(o for o in last if o.index == index)
        assert a.distance - b.distance == pytest.approx(29 * 0.6)  # 6 m/s at 10 Hz
        assert a.family == b.family and a.width == b.width and b.pixels > a.pixels


def test_the_approach_drive_meets_obstacles_from_50_m_on() -> None:
    world = synthetic.approach_world(3, frames=60, speed=10.0, fps=30.0)
    frames = synthetic.drive(world, 60, 10.0, 30.0, 3)
    seen: dict[int, list[float]] = {}
    for frame in frames:
        for obstacle in frame.obstacles:
            seen.setdefault(obstacle.index, []).append(obstacle.distance)
    assert max(d for distances in seen.values() for d in distances) > 45.0
    for distances in seen.values():
        np.testing.assert_allclose(np.diff(distances), -1 / 3, atol=1e-9) if len(
            distances) > 1 else None


@pytest.mark.parametrize(("arguments", "message"), [
    (["--count", "0"], "--count"),
    (["--bag", "--fps", "nan"], "--fps"),
    (["--bag", "--speed", "-1"], "--speed"),
])
def test_make_scenes_rejects_bad_values(tmp_path, capsys, arguments, message) -> None:
    assert main(["make-scenes", "--output", str(tmp_path / "out"), *arguments]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_make_scenes_never_mixes_with_an_earlier_run(tmp_path, capsys) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "file").write_text("")
    for output in (tmp_path, tmp_path / "file"):
        assert main(["make-scenes", "--output", str(output), "--count", "1"]) == 2
        assert "not an empty folder" in capsys.readouterr().err


@pytest.mark.parametrize("size", [(16, 64), (64, 16)])
def test_scene_config_rejects_tiny_images(size) -> None:
    with pytest.raises(ConfigurationError, match="at least 32x32"):
        synthetic.SceneConfig(height=size[0], width=size[1])
