"""Start `ood_perception_node` (or its lifecycle twin) with a params file and the large-image
Fast DDS profile.

    ros2 launch ood_perception ood_perception.launch.py model_path:=/opt/models/uem_b.onnx \
        image_topic:=/front_camera/image_raw backend:=tensorrt device:=cuda

Arguments override the params file (the installed `config/ood_perception.yaml` by default):
`image_topic` sets a one-camera `image_topics` list (empty keeps the file's list);
`model_path`, `backend` and `device` replace the file's values when given. A node that
exits with an error (bad configuration: exit code 2) makes `ros2 launch` exit non-zero,
unless `respawn:=true` restarts it after `respawn_delay` seconds. Written against the
launch and launch_ros APIs of Humble and Jazzy.
"""

import os

from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "ood_perception"
NODE_NAME = "ood_perception_node"
EXECUTABLES = {False: "ood_perception_node", True: "ood_perception_lifecycle_node"}
TRUE_VALUES = ("true", "1", "yes", "on")


class NodeFailed(RuntimeError):
    """Raised from the node's exit handler: launch logs it, shuts down, and returns 1."""


def _share(*parts: str) -> str:
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory(PACKAGE), *parts)


def _flag(context, name: str) -> bool:
    return LaunchConfiguration(name).perform(context).strip().lower() in TRUE_VALUES


def _fail_launch(event, context):
    """A node that exits with an error while launch is not shutting down fails the launch:
    launch returns 1 when an event handler raises (LaunchService.run)."""
    if event.returncode != 0 and not context.is_shutdown:
        raise NodeFailed(f"{event.process_name} exited with code {event.returncode}; "
                         "see its log above")


def _node(context, *args, **kwargs):
    """The node action, with only the overrides the user gave."""
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    overrides = {"use_sim_time": _flag(context, "use_sim_time")}
    if value("image_topic"):
        overrides["image_topics"] = [value("image_topic")]
    for name in ("backend", "device", "model_path"):
        if value(name):
            overrides[name] = value(name)
    respawn = _flag(context, "respawn")
    return [Node(
        package=PACKAGE,
        executable=EXECUTABLES[_flag(context, "managed")],
        name=NODE_NAME,
        namespace=value("namespace"),
        parameters=[value("params_file"), overrides],
        ros_arguments=["--log-level", value("log_level")],
        output="screen",
        emulate_tty=True,
        respawn=respawn,
        respawn_delay=float(value("respawn_delay")),
        on_exit=None if respawn else _fail_launch,
    )]


def generate_launch_description() -> LaunchDescription:
    profile = _share("config", "fastdds_large_images.xml")
    arguments = [
        DeclareLaunchArgument("params_file", default_value=_share("config", "ood_perception.yaml"),
                              description="node parameters YAML"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="exported model (.onnx); empty: the params file's"),
        DeclareLaunchArgument("image_topic", default_value="",
                              description="camera topic; empty: image_topics of the params file"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument("backend", default_value="",
                              description="onnxruntime, torch or tensorrt; empty: params file"),
        DeclareLaunchArgument("device", default_value="", description="cpu, cuda or cuda:N"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="follow /clock (bag replay) for latency and frame age"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="debug, info, warn, error or fatal"),
        DeclareLaunchArgument("respawn", default_value="false",
                              description="restart the node when it exits"),
        DeclareLaunchArgument("respawn_delay", default_value="2.0",
                              description="seconds before a respawn"),
        DeclareLaunchArgument("managed", default_value="false",
                              description="start ood_perception_lifecycle_node instead "
                                          "(configure and activate it with ros2 lifecycle)"),
        DeclareLaunchArgument("large_images_profile", default_value="true",
                              description="use the Fast DDS large-image shared-memory profile"),
    ]
    use_profile = IfCondition(LaunchConfiguration("large_images_profile"))
    return LaunchDescription([
        *arguments,
        # Fast DDS 2.x (Humble, Jazzy) reads the first name, Fast DDS 3.x the second.
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile, condition=use_profile),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile, condition=use_profile),
        OpaqueFunction(function=_node),
    ])
