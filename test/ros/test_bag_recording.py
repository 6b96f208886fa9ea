"""Replay records the node's tracked obstacles: stable ids in the outlines, and where each
stands (`~/obstacle_positions`) from the bag's camera_info and the params' extrinsics."""

from __future__ import annotations

import pytest
import yaml
from brightness_model import BOX_TOPIC, export_brightness_model, write_box_bag
from rclpy.serialization import deserialize_message
from visualization_msgs.msg import ImageMarker, Marker, MarkerArray

from ood_perception.cli.main import main
from ood_perception.io import rosbag

pytestmark = pytest.mark.ros
NODE = "/ood_perception_node"


def _recorded(bag, topic: str, message_type) -> list:
    with rosbag.open_reader(bag) as reader:
        chosen = [c for c in reader.connections if c.topic == topic]
        return [deserialize_message(raw, message_type)
                for _, _, raw in rosbag.stream_messages(reader, chosen)]


def _replay(tmp_path, **params) -> None:
    model = export_brightness_model(tmp_path / "brightness.onnx")
    write_box_bag(tmp_path / "in", frames=6)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "image_topics": [BOX_TOPIC], **params}}}))
    assert main(["replay", str(tmp_path / "in"), "--model", str(model), "--out",
                 str(tmp_path / "out"), "--params", str(path), "--no-overlay"]) == 0


def test_replay_records_tracked_ids_and_ground_positions(tmp_path):
    _replay(tmp_path, track_confirm_frames=2, track_window=2,
            camera_extrinsics={"front": [0.0, 0.0, 1.5, -0.5, 0.5, -0.5, 0.5]})
    outlines = _recorded(tmp_path / "out", f"{NODE}/obstacle_markers", ImageMarker)
    assert len(outlines) == 6 and {m.id for m in outlines} == {1}
    positions = _recorded(tmp_path / "out", f"{NODE}/obstacle_positions", MarkerArray)
    assert len(positions) == 6
    colours = []
    for array in positions:
        (box,) = array.markers
        assert box.header.frame_id == "base_link" and box.id == 1 and box.action == Marker.ADD
        assert abs(box.pose.position.x - box.scale.x / 2 - 10.0) < 0.2
        assert abs(box.pose.position.y) < 0.1
        colours.append(box.color.g < 0.5)  # red once confirmed
    assert colours == [False] + [True] * 5


def test_without_extrinsics_ids_are_recorded_but_no_positions(tmp_path):
    _replay(tmp_path)
    outlines = _recorded(tmp_path / "out", f"{NODE}/obstacle_markers", ImageMarker)
    assert [m.id for m in outlines] == [1] * 6
    with rosbag.open_reader(tmp_path / "out") as reader:
        assert f"{NODE}/obstacle_positions" not in {c.topic for c in reader.connections}
