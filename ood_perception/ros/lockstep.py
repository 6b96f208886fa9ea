"""Play a bag's frames into a running node one at a time and collect its answers.

Lockstep (send, wait for every output of that stamp, send the next) measures what the node
answers without the newest-frame slot dropping frames: the demo's player.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ood_perception.errors import ConfigurationError
from ood_perception.io.rosbag import BagImage, read_images
from ood_perception.ros.messages import image_array

LOCKSTEP_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.RELIABLE)


class LockstepPlayer:
    """Publishes frames on `topic` and collects `node`'s `outputs`, matched by header stamp."""

    def __init__(self, topic: str, node: str, outputs: Sequence[str]):
        self.outputs = tuple(outputs)
        self.node_name = node
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("ood_perception_lockstep_player", context=self.context)
        self.publisher = self.node.create_publisher(Image, topic, LOCKSTEP_QOS)
        self.received: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        self.condition = threading.Condition()
        for output in self.outputs:
            self.node.create_subscription(
                Image, f"{node}/{output}", lambda msg, output=output: self._store(output, msg),
                LOCKSTEP_QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _store(self, output: str, message: Image) -> None:
        key = (message.header.stamp.sec, message.header.stamp.nanosec)
        array = image_array(message)
        with self.condition:
            self.received.setdefault(key, {})[output] = array
            self.condition.notify_all()

    def wait_connected(self, timeout: float = 30.0) -> None:
        """Until the node subscribes to the camera and publishes every output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = self.publisher.get_subscription_count() > 0 and all(
                self.node.count_publishers(f"{self.node_name}/{o}") > 0 for o in self.outputs)
            if ready:
                time.sleep(0.5)  # let the node's publishers see our subscriptions too
                return
            time.sleep(0.1)
        raise ConfigurationError("the node's topics did not connect over DDS; check "
                                 "ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE")

    def send(self, message: Image, timeout: float) -> dict[str, np.ndarray]:
        """Publish one frame; the outputs that came back for its stamp within `timeout`."""
        key = (message.header.stamp.sec, message.header.stamp.nanosec)
        self.publisher.publish(message)
        with self.condition:
            self.condition.wait_for(
                lambda: len(self.received.get(key, {})) == len(self.outputs), timeout)
            return dict(self.received.get(key, {}))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def bag_image_message(item: BagImage) -> Image:
    """A recorded raw image as a `sensor_msgs/Image` with its recorded header."""
    header = Header(stamp=Time(sec=item.stamp[0], nanosec=item.stamp[1]),
                    frame_id=item.frame_id)
    message = Image(header=header, height=item.height, width=item.width,
                    encoding=item.encoding, is_bigendian=0, step=item.data.size // item.height)
    message.data = bytes(item.data)
    return message


def play_bag(bag: Path, topic: str, node: str, outputs: Sequence[str],
             timeout: float) -> tuple[list[dict], float]:
    """Every frame of `topic` in `bag` through the node; per frame its stamp, outputs
    (numpy arrays) and latency; the total seconds."""
    player = LockstepPlayer(topic, node, outputs)
    try:
        player.wait_connected()
        answers = []
        start = time.perf_counter()
        for item in read_images(bag, [topic]):
            sent = time.perf_counter()
            answer = player.send(bag_image_message(item), timeout)
            answers.append({"stamp": item.stamp, "outputs": answer,
                            "latency_ms": (time.perf_counter() - sent) * 1000.0})
        return answers, time.perf_counter() - start
    finally:
        player.close()
