"""The launch file, params file and RViz config: valid, consistent with the node's parameters."""

from __future__ import annotations

import ast
import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

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
    assert declared == {"params_file", "model_path", "image_topic", "namespace", "backend",
                        "device", "use_sim_time", "log_level", "respawn", "respawn_delay",
                        "managed", "large_images_profile"}
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in names
    assert "fastdds_large_images.xml" in LAUNCH.read_text()
    readme = (ROOT / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in declared), "README lists every argument"


def _launch_functions() -> dict:
    """The launch file's plain functions and constants, run without launch/launch_ros (not
    installable here): only the parts that need neither."""
    tree = ast.parse(LAUNCH.read_text())
    keep = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
            and node.name in ("_fail_launch", "NodeFailed")
            or isinstance(node, ast.Assign)]
    namespace: dict = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(LAUNCH), "exec"), namespace)
    return namespace


def test_a_node_that_fails_makes_launch_fail_unless_launch_is_shutting_down():
    launch = _launch_functions()
    fail = launch["_fail_launch"]
    running, stopping = SimpleNamespace(is_shutdown=False), SimpleNamespace(is_shutdown=True)
    bad_config = SimpleNamespace(returncode=2, process_name="ood_perception_node-1")
    with pytest.raises(launch["NodeFailed"], match="ood_perception_node-1 exited with code 2"):
        fail(bad_config, running)
    assert fail(bad_config, stopping) is None  # killed during launch's own shutdown
    assert fail(SimpleNamespace(returncode=0, process_name="n"), running) is None
    assert launch["EXECUTABLES"] == {False: "ood_perception_node",
                                     True: "ood_perception_lifecycle_node"}
    entry_points = (ROOT / "setup.py").read_text()
    assert all(f"{name} = " in entry_points for name in launch["EXECUTABLES"].values())


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
    assert values["model_path"] == ""  # no relative path that depends on the working dir
    config = NodeConfig.from_values(values | {"model_path": "/m.onnx"})
    assert config.image_topics == ("/camera/image_raw",)
    shown = {name: value for name, value in values.items() if name != "model_path"}
    assert all(value == PARAMETERS[name].default or math.isnan(value)
               for name, value in shown.items()), "the file shows the defaults"


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
