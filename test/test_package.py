"""The package's declarations agree with each other and with the design card layout."""

import ast
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ood_perception.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]

# Every rosdep key package.xml uses -> where ros/rosdistro defines it for Humble (Ubuntu
# jammy) and Jazzy (Ubuntu noble), checked against rosdistro's rosdep/python.yaml and
# <distro>/distribution.yaml at commit 8468e88 (2026-08-22); each python key has an ubuntu
# rule for both releases. Re-verify on a ROS machine:
#   for key in $(sed -n 's/.*_depend>\(.*\)<.*/\1/p' package.xml); do
#     rosdep resolve $key --rosdistro humble && rosdep resolve $key --rosdistro jazzy; done
DISTRIBUTIONS = "humble/distribution.yaml, jazzy/distribution.yaml"
ROSDEP_KEYS = {
    **{package: DISTRIBUTIONS for package in (
        "rclpy", "builtin_interfaces", "rcl_interfaces", "sensor_msgs", "std_msgs",
        "diagnostic_msgs", "geometry_msgs", "visualization_msgs", "vision_msgs", "nav_msgs",
        "tf2_ros",
        "lifecycle_msgs", "rosgraph_msgs", "ament_index_python", "launch", "launch_ros")},
    **{key: "rosdep/python.yaml" for key in (
        "python3-numpy", "python3-opencv", "python3-yaml", "python3-tqdm", "python3-matplotlib",
        "python3-pil", "python3-rosbags-pip", "python3-pytest", "python3-pytest-timeout",
        "python3-transformers-pip", "python3-sklearn")},
}
# Keys rosdistro does not define (python3-torch-pip, python3-onnx-pip, python3-onnxscript-pip)
# or that would install one runtime over the user's choice (onnxruntime CPU vs GPU).
NEVER_KEYS = ("python3-torch-pip", "python3-onnx-pip", "python3-onnxscript-pip",
              "python3-onnxruntime-pip", "python3-onnxruntime-gpu-pip", "python3-torch",
              "python3-pytorch-pip")
# PyPI requirement of setup.py -> its rosdep key, or None: installed by the README's pip step.
REQUIREMENT_KEYS = {
    "numpy": "python3-numpy",
    "opencv-python-headless": "python3-opencv",
    "pyyaml": "python3-yaml",
    "onnx": None,
    "onnxruntime": None,  # or onnxruntime-gpu: the user's choice
    "torch": None,
    "onnxscript": None,
    "tqdm": "python3-tqdm",
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


def _package_xml_keys(*tags: str) -> set[str]:
    manifest = ET.parse(ROOT / "package.xml").getroot()
    return {element.text for tag in tags for element in manifest.findall(tag)}


def test_every_package_xml_key_resolves_in_rosdistro():
    keys = _package_xml_keys("depend", "exec_depend", "build_depend", "test_depend")
    unverified = keys - set(ROSDEP_KEYS)
    assert not unverified, f"not verified against rosdistro: {sorted(unverified)}"
    assert not keys & set(NEVER_KEYS)


def test_setup_and_package_xml_declare_the_same_dependencies():
    exec_depends = _package_xml_keys("exec_depend")
    extras = _setup_list("EXTRAS_REQUIRE")
    declared = {_requirement_name(r) for r in _setup_list("INSTALL_REQUIRES")}
    declared |= {_requirement_name(r) for name in ("onnxruntime", "torch", "tools")
                 for r in extras[name]}
    assert set(REQUIREMENT_KEYS) == declared
    assert {key for key in REQUIREMENT_KEYS.values() if key} <= exec_depends
    readme = (ROOT / "README.md").read_text()
    pip_step = [line for line in readme.splitlines() if "pip install" in line]
    for name, key in REQUIREMENT_KEYS.items():
        if key is None:
            assert any(name in line for line in pip_step), f"README has no pip step for {name}"
    assert any("onnxruntime-gpu" in line for line in pip_step)
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


# What a colcon build needs from the repository (what setup.py installs).
PACKAGE_SOURCES = ("ood_perception", "launch", "config", "resource", "package.xml", "setup.py",
                   "setup.cfg", "README.md")


@pytest.mark.ros
def test_colcon_build_installs_a_ros_package_whose_node_and_cli_run(tmp_path, tiny_model_path):
    """`colcon build` (colcon-core + colcon-ros) as on a vehicle, then the installed
    executables run from the install tree as `ros2 run` starts them."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from ros_harness import isolated_ros_env

    colcon = Path(sys.executable).with_name("colcon")
    if not colcon.exists():
        pytest.skip("colcon is not installed (pip install colcon-core colcon-ros)")
    source = tmp_path / "src" / "ood_perception"
    for name in PACKAGE_SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, source / name)
    install = tmp_path / "install"
    build = subprocess.run(
        [str(colcon), "--log-base", str(tmp_path / "log"), "build", "--base-paths",
         str(tmp_path / "src"), "--build-base", str(tmp_path / "build"), "--install-base",
         str(install)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]

    prefix = install / "ood_perception"
    share, lib = prefix / "share" / "ood_perception", prefix / "lib" / "ood_perception"
    for path in (share / "package.xml", share / "launch" / "ood_perception.launch.py",
                 share / "config" / "ood_perception.yaml",
                 share / "config" / "fastdds_large_images.xml",
                 share / "config" / "ood_perception.rviz",
                 prefix / "share" / "ament_index" / "resource_index" / "packages" /
                 "ood_perception",
                 lib / "ood_perception_node", lib / "ood_perception_lifecycle_node",
                 lib / "ood-perception"):
        assert path.is_file(), f"{path.relative_to(install)} missing from the install tree"

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env |= isolated_ros_env()

    def installed(command: str) -> subprocess.Popen:
        """`command` in a shell that sourced the install tree, away from the sources."""
        return subprocess.Popen(["sh", "-c", f". {install}/setup.sh && {command}"],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    where = installed("python3 -c 'import ood_perception; print(ood_perception.__file__)' "
                      f"&& {lib}/ood-perception --help")
    out, err = where.communicate(timeout=120)
    assert where.returncode == 0, err[-2000:]
    assert out.splitlines()[0].startswith(str(prefix)) and "export" in out

    params = share / "config" / "ood_perception.yaml"
    failing = installed(f"{lib}/ood_perception_node --ros-args --params-file {params}")
    _, err = failing.communicate(timeout=120)
    assert failing.returncode == 2 and "model_path is required" in err, err[-2000:]

    node = installed(f"exec {lib}/ood_perception_node --ros-args --params-file {params} "
                     f"-p model_path:={tiny_model_path}")
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any("ready" in line for line in lines):
        line = node.stderr.readline()
        if not line:
            break
        lines.append(line)
    node.send_signal(signal.SIGINT)
    _, rest = node.communicate(timeout=30)
    assert any("ready" in line for line in lines), "".join(lines) + rest
    assert node.returncode == 0, rest[-2000:]
