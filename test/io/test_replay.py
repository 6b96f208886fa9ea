"""Replay carries the node's obstacle fields: stable ids per camera, and the distance ahead
from the bag's camera_info and the params file's camera_extrinsics."""

from __future__ import annotations

import json

import yaml
from brightness_model import BOX_TOPIC, export_brightness_model, write_box_bag

from ood_perception.cli.main import main
from ood_perception.io import rosbag

TOPIC = BOX_TOPIC


def test_replay_writes_tracked_obstacles_with_ids_and_distances(tmp_path):
    model = export_brightness_model(tmp_path / "brightness.onnx")
    write_box_bag(tmp_path / "in")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "image_topics": [TOPIC], "track_confirm_frames": 2, "track_window": 2,
        "camera_extrinsics": {"front": [0.0, 0.0, 1.5, -0.5, 0.5, -0.5, 0.5]}}}}))
    assert main(["replay", str(tmp_path / "in"), "--model", str(model), "--out",
                 str(tmp_path / "out"), "--params", str(params), "--no-overlay"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "out" / "obstacles.jsonl").open()]
    assert len(lines) == 6 and {line["topic"] for line in lines} == {TOPIC}
    assert [line["stamp_ns"] for line in lines] == [10**9 * (i + 1) for i in range(6)]
    tracks = [line["obstacles"] for line in lines]
    assert all(len(found) == 1 for found in tracks)
    assert {found[0]["id"] for found in tracks} == {1}
    assert [found[0]["confirmed"] for found in tracks] == [False] + [True] * 5
    for found in tracks:
        assert abs(found[0]["distance_m"] - 10.0) < 0.2 and abs(found[0]["lateral_m"]) < 0.1
        assert found[0]["bbox"] == [300, 275, 40, 41]
    assert list(rosbag.read_images(tmp_path / "out"))  # still a bag rosbags reads


def test_without_extrinsics_obstacles_keep_ids_but_have_no_distance(tmp_path):
    model = export_brightness_model(tmp_path / "brightness.onnx")
    write_box_bag(tmp_path / "in", frames=2)
    assert main(["replay", str(tmp_path / "in"), "--model", str(model), "--out",
                 str(tmp_path / "out"), "--no-overlay"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "out" / "obstacles.jsonl").open()]
    assert [line["obstacles"][0]["id"] for line in lines] == [1, 1]
    assert all(line["obstacles"][0]["distance_m"] is None for line in lines)
