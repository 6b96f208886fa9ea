"""Start `ood_perception_node` with a params file, one camera topic and the large-image profile.

    ros2 launch ood_perception ood_perception.launch.py \
        params_file:=/path/to/params.yaml image_topic:=/front_camera/image_raw backend:=tensorrt

Arguments override the params file: `image_topic` sets a one-camera `image_topics` list
(leave it empty to keep the file's list), `backend` and `device` replace the file's values.
"""

import os

from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "ood_perception"


def _share(*parts: str) -> str:
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory(PACKAGE), *parts)


def _node(context, *args, **kwargs):
    """The node action, with only the overrides the user gave."""
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    overrides = {}
    if value("image_topic"):
        overrides["image_topics"] = [value("image_topic")]
    for name in ("backend", "device", "model_path"):
        if value(name):
            overrides[name] = value(name)
    return [Node(
        package=PACKAGE,
        executable="ood_perception_node",
        name="ood_perception_node",
        namespace=value("namespace"),
        parameters=[value("params_file"), overrides],
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description() -> LaunchDescription:
    profile = _share("config", "fastdds_large_images.xml")
    arguments = [
        DeclareLaunchArgument("params_file", default_value=_share("config", "ood_perception.yaml"),
                              description="node parameters YAML"),
        DeclareLaunchArgument("image_topic", default_value="",
                              description="camera topic; empty: image_topics of the params file"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument("backend", default_value="",
                              description="onnxruntime, torch or tensorrt; empty: params file"),
        DeclareLaunchArgument("device", default_value="", description="cpu, cuda or cuda:N"),
        DeclareLaunchArgument("model_path", default_value="", description="exported model"),
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
