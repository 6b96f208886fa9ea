"""Replay carries the node's obstacle fields: stable ids per camera, and the distance ahead
from the bag's camera_info and the params file's camera_extrinsics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from brightness_model import export_brightness_model

from ood_perception.cli.main import main
from ood_perception.io import rosbag

TOPIC = "/front/image_raw"


def _bag(path: Path, frames: int = 6) -> None:
    """640x480 frames of a bright box whose bottom edge is row 315 (10 m ahead of a camera
    1.5 m up with fx = fy = 500), each after its camera_info."""
    store = rosbag.typestore()
    types = store.types
    pixels = np.full((480, 640, 3), 30, np.uint8)
    pixels[275:316, 300:340] = 255
    with rosbag.open_writer(path) as writer:
        images = writer.add_connection(TOPIC, rosbag.IMAGE, typestore=store)
        infos = writer.add_connection("/front/camera_info", rosbag.CAMERA_INFO, typestore=store)
        for index in range(frames):
            stamp = 10**9 * (index + 1)
            header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](
                sec=index + 1, nanosec=0), frame_id="front_optical")
            info = types[rosbag.CAMERA_INFO](
                header=header, height=480, width=640, distortion_model="plumb_bob",
                d=np.zeros(5), k=np.array([500.0, 0, 320, 0, 500, 240, 0, 0, 1]),
                r=np.eye(3).ravel(), p=np.array([500.0, 0, 320, 0, 0, 500, 240, 0, 0, 0, 1, 0]),
                binning_x=0, binning_y=0, roi=types["sensor_msgs/msg/RegionOfInterest"](
                    x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
            writer.write(infos, stamp, store.serialize_cdr(info, rosbag.CAMERA_INFO))
            image = rosbag.image_message(store, header, pixels, "rgb8")
            writer.write(images, stamp, store.serialize_cdr(image, rosbag.IMAGE))


def test_replay_writes_tracked_obstacles_with_ids_and_distances(tmp_path):
    model = export_brightness_model(tmp_path / "brightness.onnx")
    _bag(tmp_path / "in")
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
    _bag(tmp_path / "in", frames=2)
    assert main(["replay", str(tmp_path / "in"), "--model", str(model), "--out",
                 str(tmp_path / "out"), "--no-overlay"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "out" / "obstacles.jsonl").open()]
    assert [line["obstacles"][0]["id"] for line in lines] == [1, 1]
    assert all(line["obstacles"][0]["distance_m"] is None for line in lines)
