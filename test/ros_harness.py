"""Real rclpy + Fast DDS helpers for node tests: an isolated domain, a camera, a listener."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LARGE_IMAGES_PROFILE = ROOT / "config" / "fastdds_large_images.xml"


def isolated_ros_env() -> dict[str, str]:
    """Environment for this test process and its children: own domain, localhost only."""
    return {"ROS_DOMAIN_ID": str(random.randint(1, 200)),
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "FASTRTPS_DEFAULT_PROFILES_FILE": str(LARGE_IMAGES_PROFILE),
            "FASTDDS_DEFAULT_PROFILES_FILE": str(LARGE_IMAGES_PROFILE)}


def image(height: int, width: int, square: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Grey RGB frame with a magenta square (y, x, h, w): the tiny model's anomaly."""
    frame = np.full((height, width, 3), 128, np.uint8)
    if square is not None:
        y, x, h, w = square
        frame[y:y + h, x:x + w] = (255, 0, 255)
    return frame


class Listener:
    """Collects every message on some topics; waits for a matching one."""

    def __init__(self, node, topics: dict[str, type], qos=10):
        self._condition = threading.Condition()
        self.messages: dict[str, list] = defaultdict(list)
        for topic, message_type in topics.items():
            node.create_subscription(message_type, topic,
                                     lambda message, topic=topic: self._store(topic, message), qos)

    def _store(self, topic: str, message) -> None:
        with self._condition:
            self.messages[topic].append(message)
            self._condition.notify_all()

    def wait_for(self, topic: str, predicate=lambda message: True, timeout: float = 20.0,
                 after: int = 0):
        """The first message on `topic` (from its `after`-th on) that satisfies `predicate`,
        or AssertionError."""
        def found():
            return next((m for m in self.messages[topic][after:] if predicate(m)), None)

        with self._condition:
            if not self._condition.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"no matching message on {topic} within {timeout} s; got "
                                     f"{len(self.messages[topic])}")
            return found()


def start_node_process(args: list[str], env: dict[str, str],
                       module: str = "ood_perception.ros.node") -> subprocess.Popen:
    """`python -m <module> ...` (the node by default) as its own process, as `ros2 run`
    would start it."""
    return subprocess.Popen([sys.executable, "-m", module, *args],
                            env=os.environ | env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_until(condition, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


class ClientNode:
    """A client process's own rclpy context and node, spun on a thread: a camera, listeners and
    service clients apart from the node under test, as a vehicle tool would be."""

    def __init__(self, name: str):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def call(self, service_type, name: str, request, timeout: float = 30.0):
        """One service call, answered within `timeout` s or AssertionError."""
        client = self.node.create_client(service_type, name)
        assert client.wait_for_service(timeout_sec=timeout), name
        future = client.call_async(request)
        assert wait_until(future.done, timeout), name
        return future.result()

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=5)
