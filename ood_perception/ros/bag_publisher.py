"""Publish a rosbag's camera messages live with rclpy, as `ros2 bag play` would.

The raw CDR of each message is sent as recorded (headers untouched), at the recorded rate
times `rate`, after giving discovery a moment to match the subscribers. Like `ros2 bag play
--clock`, `/clock` carries the bag's time (each message's recorded time, just before the
message), so a node with `use_sim_time` measures latency and frame age against the bag.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from ood_perception.errors import ConfigurationError
from ood_perception.io import rosbag

DISCOVERY_WAIT_S = 5.0
# What `ros2 bag play --clock` and rclpy's time source use for /clock.
CLOCK_QOS = 10


def _wait_for_subscribers(publishers: list, seconds: float) -> None:
    """Give discovery up to `seconds` to match every publisher, so the first frames arrive."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(p.get_subscription_count() > 0 for p in publishers):
            return
        time.sleep(0.05)


def publish_bag(bag: Path, topics: list[str] | None = None, rate: float = 1.0) -> dict[str, int]:
    """Publish the bag's image messages; messages sent per topic (Ctrl-C stops early)."""
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CompressedImage, Image

    sent: Counter = Counter()
    rclpy.init()
    node = rclpy.create_node("ood_perception_replay")
    try:
        with rosbag.open_reader(bag) as reader:
            cameras = rosbag.image_connections(reader, topics)
            if not cameras:
                raise ConfigurationError(f"{bag} has no image topics")
            publishers = {
                c.id: node.create_publisher(
                    CompressedImage if c.msgtype == rosbag.COMPRESSED else Image, c.topic,
                    qos_profile_sensor_data)
                for c in cameras
            }
            clock = node.create_publisher(Clock, "/clock", CLOCK_QOS)
            # A sim-time node subscribes to /clock too: without the first clock messages its
            # first frames would be stamped against time zero.
            _wait_for_subscribers([*publishers.values(), clock], DISCOVERY_WAIT_S)
            wall_start, bag_start = time.monotonic(), None
            for connection, timestamp, raw in reader.messages(connections=cameras):
                bag_start = timestamp if bag_start is None else bag_start
                due = wall_start + (timestamp - bag_start) / 1e9 / rate
                time.sleep(max(0.0, due - time.monotonic()))
                clock.publish(Clock(clock=Time(sec=timestamp // 10**9,
                                               nanosec=timestamp % 10**9)))
                publishers[connection.id].publish(bytes(raw))
                sent[connection.topic] += 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return dict(sent)
