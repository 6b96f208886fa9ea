"""The package's declarations agree with each other and with the design card layout."""

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ood_perception.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]

# PyPI requirement -> rosdep key in package.xml
ROSDEP_KEYS = {
    "numpy": "python3-numpy",
    "opencv-python-headless": "python3-opencv",
    "pyyaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "onnx": "python3-onnx-pip",
    "onnxruntime": "python3-onnxruntime-pip",
    "onnxscript": "python3-onnxscript-pip",
    "torch": "python3-torch-pip",
    "rosbags": "python3-rosbags-pip",
    "matplotlib": "python3-matplotlib",
    "pillow": "python3-pil",
}


def _setup_list(name: str) -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in setup.py")


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=\[ ]", requirement, maxsplit=1)[0].lower()


def test_setup_and_package_xml_declare_the_same_dependencies():
    manifest = ET.parse(ROOT / "package.xml").getroot()
    exec_depends = {e.text for e in manifest.findall("exec_depend")}
    extras = _setup_list("EXTRAS_REQUIRE")
    runtime = {_requirement_name(r) for r in _setup_list("INSTALL_REQUIRES")}
    declared = runtime | {_requirement_name(r) for name in ("onnxruntime", "torch", "tools")
                          for r in extras[name]}
    assert set(ROSDEP_KEYS) == declared
    assert {ROSDEP_KEYS[name] for name in declared} <= exec_depends
    ros_wheels = {_requirement_name(r) for r in extras["ros"]}
    for wheel in ros_wheels:
        ros_package = wheel.removeprefix("ros-jazzy-").replace("-", "_")
        assert ros_package in exec_depends, f"{ros_package} missing from package.xml"


def test_the_node_runs_without_the_offline_tools():
    """What the node imports needs only the run-time set (plus the chosen runtime and ROS)."""
    import subprocess
    import sys

    tools = {_requirement_name(r) for r in _setup_list("EXTRAS_REQUIRE")["tools"]}
    tools -= {"onnxruntime", "torch"}  # the runtimes the node may be configured with
    modules = {"rosbags", "tqdm", "matplotlib", "PIL", "onnxscript"}
    assert {"rosbags", "tqdm", "matplotlib", "pillow", "onnxscript"} == tools
    code = ("import sys; import ood_perception.ros.node, ood_perception.backends.onnxruntime; "
            f"print(sorted(m for m in {sorted(modules)!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_package_xml_is_format_3_ament_python():
    manifest = ET.parse(ROOT / "package.xml").getroot()
    assert manifest.get("format") == "3"
    assert manifest.findtext("name") == "ood_perception"
    assert manifest.find("export/build_type").text == "ament_python"


def test_design_card_layout_is_present():
    for path in ("resource/ood_perception", "setup.cfg", "launch", "config", "test"):
        assert (ROOT / path).exists(), path
    assert "install_scripts=$base/lib/ood_perception" in (ROOT / "setup.cfg").read_text()


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci/run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme


def test_every_cli_command_has_a_module_with_the_tool_interface():
    for command in cli.COMMANDS:
        parser = cli.build_parser(command)
        assert parser.prog == f"ood-perception {command}"


def test_cli_help_and_unknown_command(capsys):
    assert cli.main(["--help"]) == 0
    assert "export" in capsys.readouterr().out
    assert cli.main(["no-such-command"]) == 2
    assert "unknown command" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "export", "evaluate"])
def test_command_help_exits_cleanly(command):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0


def test_code_passes_ruff():
    """The lint rules of ruff.toml (what ament_flake8 would flag) hold for every Python file."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "ruff", "check", "ood_perception", "test",
                             "launch", "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
