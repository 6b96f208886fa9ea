"""`ood-perception replay`: real input bags (sqlite3 and MCAP) in, bags recorded as the live
node publishes out (its topics, messages and QoS)."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from bag_files import write_images

from ood_perception.cli.main import main
from ood_perception.io import rosbag as rosbag_io

STAMP0 = 1_700_000_000_123_000_000
NODE = "/ood_perception_node"
ROOT = Path(__file__).resolve().parents[2]


def _scene(shape=(48, 64)):
    rgb = np.full((*shape, 3), 128, np.uint8)
    rgb[16:32, 24:40] = (255, 0, 255)  # the tiny model scores magenta high
    return rgb


def _frames(topic="/cam/image_raw", count=3):
    return [(topic, STAMP0 + i * 100_000_000, _scene()) for i in range(count)]


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_replay_round_trip(tmp_path, tiny_model_path, storage, capsys):
    bag_in, bag_out = tmp_path / "in", tmp_path / "out"
    frames = _frames()
    write_images(bag_in, frames, storage=storage, frame_id="cam_link")
    assert (
        main(["replay", str(bag_in), "--out", str(bag_out), "--model", str(tiny_model_path)]) == 0
    )
    assert "3 frames" in capsys.readouterr().out
    assert rosbag_io.bag_storage(bag_out) == storage
    by_topic = {}
    for image in rosbag_io.read_images(bag_out):
        by_topic.setdefault(image.topic, []).append(image)
    assert set(by_topic) == {
        "/cam/image_raw",
        f"{NODE}/anomaly_score",
        f"{NODE}/obstacle_mask",
        f"{NODE}/overlay",
    }
    stamps = [(t // 10**9, t % 10**9) for _, t, _ in frames]
    encodings = {
        f"{NODE}/anomaly_score": "32FC1",
        f"{NODE}/obstacle_mask": "mono8",
        f"{NODE}/overlay": "bgr8",
        "/cam/image_raw": "rgb8",
    }
    for topic, images in by_topic.items():
        assert [i.stamp for i in images] == stamps, topic
        assert [i.timestamp for i in images] == [t for _, t, _ in frames], topic
        assert all(i.frame_id == "cam_link" and (i.height, i.width) == (48, 64) for i in images), (
            topic
        )
        assert images[0].encoding == encodings[topic]
    score = by_topic[f"{NODE}/anomaly_score"][0].data.view(np.float32).reshape(48, 64)
    assert score[20:28, 28:36].mean() > score[:8, :8].mean()
    mask = by_topic[f"{NODE}/obstacle_mask"][0].data.reshape(48, 64)
    assert set(np.unique(mask)) <= {0, 255}


def test_replay_compressed_input_other_storage(tmp_path, tiny_model_path):
    bag_in, bag_out = tmp_path / "in", tmp_path / "out"
    write_images(
        bag_in, _frames("/front/image/compressed", 2), storage="sqlite3", compressed_format="png"
    )
    assert (
        main(
            [
                "replay",
                str(bag_in),
                "--out",
                str(bag_out),
                "--model",
                str(tiny_model_path),
                "--topics",
                "/front/image",
                "--storage",
                "mcap",
                "--no-overlay",
                "--no-copy",
            ]
        )
        == 0
    )
    topics = {i.topic for i in rosbag_io.read_images(bag_out)}
    assert topics == {f"{NODE}/anomaly_score", f"{NODE}/obstacle_mask"}
    assert rosbag_io.bag_storage(bag_out) == "mcap"


def test_replay_errors(tmp_path, tiny_model_path, capsys):
    bag_in = tmp_path / "in"
    write_images(bag_in, _frames(count=1))
    assert (
        main(["replay", str(bag_in), "--out", str(bag_in), "--model", str(tiny_model_path)]) == 2
    )
    assert "exists already" in capsys.readouterr().err
    assert main(["replay", str(bag_in), "--model", str(tiny_model_path)]) == 2
    assert "--out" in capsys.readouterr().err


@pytest.mark.ros
def test_live_publishes_with_recorded_headers(tmp_path):
    import rclpy
    from sensor_msgs.msg import Image

    bag = tmp_path / "in"
    write_images(bag, _frames("/live_test/image_raw", 5), frame_id="cam_link")
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("replay_listener", context=context)
    received = []
    node.create_subscription(
        Image, "/live_test/image_raw", received.append, rclpy.qos.qos_profile_sensor_data
    )
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        publisher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ood_perception.cli.main",
                "replay",
                str(bag),
                "--live",
                "--rate",
                "0.5",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while publisher.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        for _ in range(20):
            executor.spin_once(timeout_sec=0.05)
        output = publisher.communicate(timeout=30)[0]
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
    assert publisher.returncode == 0, output
    assert "published 5 messages" in output
    assert received, "no message arrived"
    stamps = {STAMP0 + i * 100_000_000 for i in range(5)}
    for msg in received:
        assert msg.header.frame_id == "cam_link"
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec in stamps


def test_output_topic_clash_is_refused_before_writing(tmp_path, tiny_model_path, capsys):
    bag_in, bag_out = tmp_path / "in", tmp_path / "out"
    frames = _frames(count=1) + [(f"{NODE}/anomaly_score", STAMP0, _scene())]
    write_images(bag_in, frames)
    args = ["replay", str(bag_in), "--out", str(bag_out), "--model", str(tiny_model_path)]
    assert main([*args, "--topics", "/cam/image_raw"]) == 2
    assert "--no-copy" in capsys.readouterr().err and not bag_out.exists()
    assert main([*args, "--topics", "/cam/image_raw", "--no-copy"]) == 0
    assert {i.topic for i in rosbag_io.read_images(bag_out)} == {
        f"{NODE}/anomaly_score",
        f"{NODE}/obstacle_mask",
        f"{NODE}/overlay",
    }


def test_corrupt_frames_are_dropped_and_counted(tmp_path, tiny_model_path, capsys):
    bag_in, bag_out = tmp_path / "in", tmp_path / "out"
    store = rosbag_io.typestore()
    with rosbag_io.open_writer(bag_in) as writer:
        connection = writer.add_connection(
            "/cam/image_raw/compressed", rosbag_io.COMPRESSED, typestore=store
        )
        header = store.types["std_msgs/msg/Header"](
            stamp=store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="c"
        )
        msg = store.types[rosbag_io.COMPRESSED](
            header=header, format="jpeg", data=np.frombuffer(b"not a jpeg", np.uint8)
        )
        writer.write(connection, 10**9, store.serialize_cdr(msg, rosbag_io.COMPRESSED))
    assert (
        main(["replay", str(bag_in), "--out", str(bag_out), "--model", str(tiny_model_path)]) == 0
    )
    out = capsys.readouterr().out
    assert "0 frames" in out and "dropped 1 frames: corrupt_compressed" in out


def test_threshold_defaults_to_the_score_range_midpoint_as_in_the_node(
        tmp_path, tiny_model_path, capsys):
    """The shipped params file leaves score_threshold NaN: the model's midpoint (0.5 here)."""
    bag_in = tmp_path / "in"
    write_images(bag_in, _frames(count=1))
    params = ROOT / "config" / "ood_perception.yaml"
    args = ["replay", str(bag_in), "--model", str(tiny_model_path), "--no-overlay"]
    assert main([*args, "--out", str(tmp_path / "a"), "--params", str(params)]) == 0
    assert "threshold 0.5" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "b"), "--score-threshold", "0.25"]) == 0
    assert "threshold 0.25" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "in"]  # no partial bags
    assert not any("partial" in p.name for p in (tmp_path / "a").iterdir())
    assert rosbag_io.bag_storage(tmp_path / "a") == "sqlite3"
    assert list(rosbag_io.read_images(tmp_path / "a"))


def _merged(out, *bags):
    """One bag holding every connection and message of `bags`, in time order per bag."""
    store = rosbag_io.typestore()
    with rosbag_io.open_writer(out) as writer:
        for bag in bags:
            with rosbag_io.open_reader(bag) as reader:
                targets = {c.id: rosbag_io.copy_connection(writer, c, store)
                           for c in reader.connections}
                for connection, timestamp, raw in reader.messages():
                    writer.write(targets[connection.id], timestamp, raw)
    return out


def test_a_camera_recorded_raw_and_compressed_is_scored_once(tmp_path, tiny_model_path):
    raw = _frames(count=2)
    compressed = [("/cam/image_raw/compressed", stamp, rgb) for _, stamp, rgb in raw]
    write_images(tmp_path / "raw", raw)
    write_images(tmp_path / "compressed", compressed, compressed_format="png")
    merged = _merged(tmp_path / "merged", tmp_path / "raw", tmp_path / "compressed")
    with rosbag_io.open_reader(merged) as reader:  # --live publishes both, for either node
        assert len(rosbag_io.image_connections(reader, None)) == 2
        assert [c.topic for c in rosbag_io.image_connections(reader, None, True)] == [
            "/cam/image_raw"]
    for topics in ([], ["--topics", "/cam/image_raw"]):
        out = tmp_path / f"out{len(topics)}"
        assert main(["replay", str(merged), "--out", str(out), "--model", str(tiny_model_path),
                     "--no-copy", "--no-overlay", *topics]) == 0
        scores = [i for i in rosbag_io.read_images(out) if i.topic == f"{NODE}/anomaly_score"]
        assert len(scores) == 2


def test_a_truncated_message_is_one_dropped_frame(tmp_path, tiny_model_path, capsys):
    bag_in, bag_out = tmp_path / "in", tmp_path / "out"
    store = rosbag_io.typestore()
    frames = _frames(count=3)
    write_images(tmp_path / "good", frames)
    with rosbag_io.open_reader(tmp_path / "good") as reader, \
            rosbag_io.open_writer(bag_in) as writer:
        (connection,) = reader.connections
        target = rosbag_io.copy_connection(writer, connection, store)
        for index, (_, timestamp, raw) in enumerate(reader.messages()):
            writer.write(target, timestamp, bytes(raw)[:40] if index == 1 else raw)
    assert main(["replay", str(bag_in), "--out", str(bag_out), "--model", str(tiny_model_path),
                 "--no-overlay"]) == 0
    out = capsys.readouterr().out
    assert "2 frames" in out and "dropped 1 frames: corrupt_message" in out


def _bag_with_calibration(path: Path, count: int) -> None:
    """`count` frames on /cam/image_raw, each after a CameraInfo on /cam/camera_info."""
    store = rosbag_io.typestore()
    header_type = store.types["std_msgs/msg/Header"]
    time_type = store.types["builtin_interfaces/msg/Time"]
    info_type = store.types["sensor_msgs/msg/CameraInfo"]
    roi_type = store.types["sensor_msgs/msg/RegionOfInterest"]
    with rosbag_io.open_writer(path) as writer:
        images = writer.add_connection("/cam/image_raw", rosbag_io.IMAGE, typestore=store)
        infos = writer.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo",
                                      typestore=store)
        for _, stamp, rgb in _frames(count=count):
            header = header_type(stamp=time_type(sec=stamp // 10**9, nanosec=stamp % 10**9),
                                 frame_id="cam_link")
            info = info_type(header=header, height=48, width=64, distortion_model="plumb_bob",
                             d=np.zeros(5), k=np.array([50.0, 0, 32, 0, 50, 24, 0, 0, 1]),
                             r=np.eye(3).ravel(), p=np.array([50.0, 0, 32, 0, 0, 50, 24, 0,
                                                              0, 0, 1, 0]),
                             binning_x=0, binning_y=0, roi=roi_type(
                                 x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
            writer.write(infos, stamp - 1, store.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
            image = rosbag_io.image_message(store, header, rgb, "rgb8")
            writer.write(images, stamp, store.serialize_cdr(image, rosbag_io.IMAGE))


@pytest.mark.ros
def test_scored_bag_records_what_the_live_node_publishes(tmp_path, tiny_model_path, monkeypatch):
    """The same params into `replay --out` and into the node process: the scored bag has the
    topics (with their QoS) a recording of the live node has, message for message."""
    import rclpy
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from ros_harness import Listener, isolated_ros_env, start_node_process, wait_until
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header
    from visualization_msgs.msg import ImageMarker

    env = isolated_ros_env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    params = tmp_path / "params.yaml"
    params.write_text(
        f"/**:\n  ros__parameters:\n    model_path: {tiny_model_path}\n"
        "    image_topics: [/cam/image_raw]\n    score_resolution: model\n"
        "    publish_semantic: true\n    diagnostics_period: 0.2\n")
    bag_in, bag_out = tmp_path / "in", tmp_path / "out"
    _bag_with_calibration(bag_in, 2)
    assert main(["replay", str(bag_in), "--out", str(bag_out), "--model", str(tiny_model_path),
                 "--params", str(params), "--no-copy"]) == 0
    with rosbag_io.open_reader(bag_out) as reader:
        recorded = {c.topic: c.msgtype for c in reader.connections}
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert all(c.ext.offered_qos_profiles for c in reader.connections)
    assert set(recorded) == {f"{NODE}/{output}" for output in (
        "anomaly_score", "obstacle_mask", "overlay", "semantic", "obstacle_markers",
        "camera_info", "score_camera_info")}
    assert set(counts.values()) == {2}
    types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CameraInfo": CameraInfo,
             "visualization_msgs/msg/ImageMarker": ImageMarker}

    process = start_node_process(["--ros-args", "--params-file", str(params)], env)
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("recorder", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        def published() -> dict[str, str]:
            """What the node process advertises under its name (the graph's view)."""
            if NODE[1:] not in node.get_node_names():
                return {}
            return {topic: kinds[0] for topic, kinds in node.get_publisher_names_and_types_by_node(
                NODE[1:], "/") if topic.startswith(f"{NODE}/")}

        assert wait_until(lambda: f"{NODE}/anomaly_score" in published(), 60.0), \
            process.stderr.read() if process.poll() is not None else "no publishers"
        advertised = published()
        listener = Listener(node, {topic: types[kind] for topic, kind in advertised.items()
                                   if kind in types} | {"/diagnostics": DiagnosticArray})
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        camera = node.create_publisher(Image, "/cam/image_raw", reliable)
        info = node.create_publisher(CameraInfo, "/cam/camera_info", reliable)
        def calibrated(message) -> bool:
            return any(v.key == "camera_info" and v.value == "received"
                       for s in message.status for v in s.values)

        calibration = CameraInfo(height=48, width=64, k=[50.0, 0, 32, 0, 50, 24, 0, 0, 1])

        def calibration_received() -> bool:
            info.publish(calibration)  # best effort on the node's side: until it says so
            reports = listener.messages["/diagnostics"]
            return bool(reports) and calibrated(reports[-1])

        assert wait_until(calibration_received, 30.0, interval=0.2)

        def topics_of_frame(stamp: Time) -> set[str]:
            return {topic for topic, messages in list(listener.messages.items())
                    if topic != "/diagnostics" and any(m.header.stamp == stamp
                                                       for m in list(messages))}

        def answered_on_every_topic(index: int) -> set[str]:
            """Send frames with new stamps until one is answered on every topic the bag has
            (the node counts subscribers that discovery has matched); its topics."""
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline:
                stamp = STAMP0 + index * 10**6
                index += 1
                header = Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9),
                                frame_id="cam_link")
                camera.publish(Image(header=header, height=48, width=64, encoding="rgb8",
                                     step=64 * 3, data=_scene().tobytes()))
                if wait_until(lambda h=header: topics_of_frame(h.stamp) >= set(recorded), 2.0):
                    return topics_of_frame(header.stamp)
            raise AssertionError(f"no frame answered on all of {sorted(recorded)}")

        answered_on_every_topic(0)
        # A second frame once every subscription is matched: exactly the bag's topics.
        live = answered_on_every_topic(1000)
        assert live == set(recorded)
        assert {topic: advertised[topic] for topic in live} == recorded
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
