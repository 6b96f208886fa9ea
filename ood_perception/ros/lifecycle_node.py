"""`ood_perception_lifecycle_node`: the managed twin of `ood_perception_node`.

Same parameters, topics and diagnostics; the work moves into the lifecycle transitions
(rclpy `LifecycleNode`, driven by `ros2 lifecycle set` or a lifecycle manager):
configure loads the model (and builds a missing TensorRT engine), activate subscribes and
starts publishing, deactivate stops both, cleanup frees the model, and shutdown ends the
process (exit code 0). Nothing is published before activation.
"""

from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.task import Future

from ood_perception.ros.node import STARTUP_ERRORS, run_node
from ood_perception.ros.parameter_declaration import declare_overrides
from ood_perception.ros.parameters import NODE_NAME
from ood_perception.ros.runtime import NodeRuntime

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class OodPerceptionLifecycleNode(LifecycleNode):
    """Declares the parameters at construction; loads nothing before `configure`."""

    def __init__(self, **node_options):
        declare_overrides(super().__init__, NODE_NAME, node_options)
        self.runtime = NodeRuntime(self, lifecycle=True)
        # Done at the `shutdown` transition: the process then exits, code 0.
        self.finished = Future()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.get_parameter("build_only").value:
            self.get_logger().error("build_only is for ood_perception_node; the lifecycle "
                                    "node's configure builds a missing engine itself")
            return FAILURE
        try:
            self.runtime.configure()
        except STARTUP_ERRORS as error:
            self.get_logger().error(f"configure failed: {error}")
            return FAILURE
        self.get_logger().info("configured: model loaded; activate to start")
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        super().on_activate(state)  # enables the managed publishers
        try:
            self.runtime.activate()
        except STARTUP_ERRORS as error:
            self.get_logger().error(f"activate failed: {error}")
            self.runtime.deactivate()
            super().on_deactivate(state)
            return FAILURE
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.runtime.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.runtime.cleanup()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.runtime.cleanup()
        self.finished.set_result(state.label)
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error in state {state.label}: the model is freed")
        self.runtime.cleanup()
        return SUCCESS


def main(argv: list[str] | None = None) -> int:
    """Entry point of `ros2 run ood_perception ood_perception_lifecycle_node`; 2 on bad
    parameters at construction (bad values found at configure fail that transition)."""
    return run_node(OodPerceptionLifecycleNode, argv)


if __name__ == "__main__":
    sys.exit(main())
