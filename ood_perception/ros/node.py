"""`ood_perception_node`: camera images in, anomaly score, obstacle mask and obstacles out.

A thin rclpy node over `NodeRuntime` (parameters, model, topics, worker): it configures and
activates at construction, so a bad configuration stops start-up with one line and exit
code 2. `ood_perception_lifecycle_node` is the managed twin.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import rclpy
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.task import Future

from ood_perception.errors import OodPerceptionError
from ood_perception.ros.parameter_declaration import declare_overrides
from ood_perception.ros.parameters import NODE_NAME
from ood_perception.ros.runtime import NodeRuntime

# Seconds a finished node keeps serving, for its last replies.
DRAIN_S = 0.5
# What start-up raises for a configuration the user must fix.
STARTUP_ERRORS = (OodPerceptionError, ParameterException, NameValidationException)


class OodPerceptionNode(Node):
    """Loads the model and starts at construction; bad configuration raises
    `ConfigurationError` (and leaves nothing running)."""

    def __init__(self, **node_options):
        declare_overrides(super().__init__, NODE_NAME, node_options)
        self.runtime = NodeRuntime(self)
        self.finished = Future()  # never done: the node runs until shutdown
        self.build_only = not self.runtime.configure()
        if self.build_only:
            self.get_logger().info("build_only: the engines are built and cached; exiting")
            return
        try:
            self.runtime.activate()
        except Exception:
            self.runtime.cleanup()
            raise

    def close(self) -> None:
        """Stop the worker and release the model (idempotent)."""
        self.runtime.cleanup()


def run_node(make_node: Callable[[], Node], argv: list[str] | None) -> int:
    """Construct and spin a node until shutdown; 2 (and one line) on bad configuration."""
    rclpy.init(args=argv)
    node = None
    code = 0
    try:
        node = make_node()
        if not getattr(node, "build_only", False):
            rclpy.spin_until_future_complete(node, node.finished)
            drain(node)
    except STARTUP_ERRORS as error:
        print(f"{NODE_NAME}: error: {error}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.runtime.cleanup()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


def drain(node: Node) -> None:
    """Serve callbacks a moment longer after the node finished, so the reply to the request
    that finished it (a lifecycle `shutdown`) leaves before the process does."""
    deadline = time.monotonic() + DRAIN_S
    while rclpy.ok() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `ros2 run ood_perception ood_perception_node`; 2 on bad configuration."""
    return run_node(OodPerceptionNode, argv)


if __name__ == "__main__":
    sys.exit(main())
