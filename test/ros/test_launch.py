"""The launch file, params file and RViz config: valid, consistent with the node's parameters."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from ood_perception.ros.parameters import PARAMETERS, PARAMS_FILE_KEY, NodeConfig

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch" / "ood_perception.launch.py"


def test_launch_file_declares_the_documented_arguments():
    tree = ast.parse(LAUNCH.read_text())
    declared = {node.args[0].value for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") ==
                "DeclareLaunchArgument"}
    assert {"params_file", "image_topic", "namespace", "backend"} <= declared
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in names
    assert "fastdds_large_images.xml" in LAUNCH.read_text()


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None,
                    reason="launch_ros is not installed here (no ROS distribution)")
def test_launch_description_builds():
    spec = importlib.util.spec_from_file_location("ood_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.generate_launch_description().entities


def test_default_params_file_is_valid_for_the_node(tmp_path: Path):
    params = yaml.safe_load((ROOT / "config" / "ood_perception.yaml").read_text())
    values = params[PARAMS_FILE_KEY]["ros__parameters"]  # any namespace, any node name
    assert set(values) <= set(PARAMETERS)
    config = NodeConfig.from_values(values)
    assert config.image_topics == ("/camera/image_raw",)


def test_rviz_config_shows_camera_overlay_mask_and_score():
    rviz = yaml.safe_load((ROOT / "config" / "ood_perception.rviz").read_text())
    topics = {display["Topic"]["Value"] for display in rviz["Visualization Manager"]["Displays"]}
    assert topics == {"/camera/image_raw", "/ood_perception_node/overlay",
                      "/ood_perception_node/obstacle_mask", "/ood_perception_node/anomaly_score"}


def test_fastdds_profile_is_well_formed_xml():
    import xml.etree.ElementTree as ET

    root = ET.parse(ROOT / "config" / "fastdds_large_images.xml").getroot()
    namespace = {"p": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    sizes = [int(e.text) for e in root.iterfind(".//p:segment_size", namespace)]
    assert sizes and min(sizes) >= 4 * 1920 * 1080 * 4
