"""`ood_perception_node`: camera images in, anomaly score, obstacle mask and obstacles out.

A thin rclpy node over `NodeRuntime` (parameters, model, topics, worker): it configures and
activates at construction, so a bad configuration stops start-up with one line and exit
code 2. `ood_perception_lifecycle_node` is the managed twin.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from ood_perception.errors import OodPerceptionError
from ood_perception.ros.parameters import NODE_NAME
from ood_perception.ros.runtime import NodeRuntime

# What start-up raises for a configuration the user must fix.
STARTUP_ERRORS = (OodPerceptionError, ParameterException, NameValidationException)


class OodPerceptionNode(Node):
    """Loads the model and starts at construction; bad configuration raises
    `ConfigurationError` (and leaves nothing running)."""

    def __init__(self, **node_options):
        # Overrides declared first: `NodeRuntime` finds them, typos included, through
        # rclpy's public parameter API.
        super().__init__(NODE_NAME, automatically_declare_parameters_from_overrides=True,
                         **node_options)
        self.runtime = NodeRuntime(self)
        self.add_on_set_parameters_callback(self.runtime.on_set_parameters)
        self.build_only = not self.runtime.configure()
        if self.build_only:
            self.get_logger().info("build_only: the engine is built and cached; exiting")
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
            rclpy.spin(node)
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of `ros2 run ood_perception ood_perception_node`; 2 on bad configuration."""
    return run_node(OodPerceptionNode, argv)


if __name__ == "__main__":
    sys.exit(main())
