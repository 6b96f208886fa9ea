"""A CI run fails where rclpy does not import: `.ci/run` stops before the tests, and the
pytest plugin (test/ros_required.py) turns skipped or deselected ROS tests into failures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "test"
CI_ENV = ("CI", "OOD_PERCEPTION_REQUIRE_ROS")
TINY_SUITE = {
    "pytest.ini": "[pytest]\nmarkers =\n    ros: needs rclpy and Fast DDS\n",
    # The pattern the plugin exists for: a whole ROS module skipped at collection.
    "test_node_module.py": ('import pytest\nrclpy = pytest.importorskip("rclpy")\n'
                            "pytestmark = pytest.mark.ros\n\n"
                            "def test_node():\n    assert rclpy.ok() is not None\n"),
    "test_marked.py": ("import pytest\n\n@pytest.mark.ros\ndef test_client():\n"
                       '    pytest.importorskip("rclpy")\n'),
    "test_plain.py": "def test_plain():\n    assert 1 + 1 == 2\n",
}


def _without_rclpy(folder: Path) -> Path:
    """A folder that, first on PYTHONPATH, makes `import rclpy` fail as on a broken install."""
    package = folder / "rclpy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        'raise ModuleNotFoundError("No module named \'rclpy\'", name="rclpy")\n')
    return folder


def _environment(python_path: list[Path], ci: bool) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in CI_ENV}
    env["PYTHONPATH"] = os.pathsep.join(str(path) for path in python_path)
    if ci:
        env["CI"] = "true"
    return env


def _run_tiny_suite(tmp_path: Path, *args: str, ci: bool,
                    rclpy: bool = False) -> subprocess.CompletedProcess:
    """The tiny suite in its own pytest process with this plugin; rclpy blocked unless asked."""
    suite = tmp_path / "suite"
    suite.mkdir(exist_ok=True)
    for name, text in TINY_SUITE.items():
        (suite / name).write_text(text)
    blocked = tmp_path / "blocked"
    if not blocked.exists():
        _without_rclpy(blocked)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "ros_required", "-p", "no:cacheprovider",
         "--rootdir", str(suite), "-q", *args, str(suite)],
        capture_output=True, text=True, cwd=suite, timeout=120,
        env=_environment([TESTS, ROOT] if rclpy else [blocked, TESTS, ROOT], ci))


def test_without_ci_a_missing_rclpy_only_skips(tmp_path):
    result = _run_tiny_suite(tmp_path, ci=False)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 passed, 2 skipped" in result.stdout


def test_on_ci_a_missing_rclpy_fails_the_module_and_the_marked_test(tmp_path):
    result = _run_tiny_suite(tmp_path, "--continue-on-collection-errors", ci=True)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "ROS test module skipped on a CI run (could not import 'rclpy'" in result.stdout
    assert "ROS test skipped on a CI run (could not import 'rclpy'" in result.stdout
    assert "1 failed, 1 passed" in result.stdout and "1 error" in result.stdout
    plain = _run_tiny_suite(tmp_path, ci=True)  # a collection error stops the run as usual
    assert plain.returncode != 0 and "ROS test module skipped on a CI run" in plain.stdout


def test_on_ci_deselected_ros_tests_fail_the_run(tmp_path):
    result = _run_tiny_suite(tmp_path, "-m", "not ros", ci=True, rclpy=True)
    assert "1 passed, 2 deselected" in result.stdout, result.stdout[-3000:]
    assert result.returncode == 1
    assert "ROS tests deselected on a CI run" in result.stdout
    assert "test_marked.py::test_client" in result.stdout
    assert "test_node_module.py::test_node" in result.stdout
    assert _run_tiny_suite(tmp_path, "-m", "not ros", ci=False, rclpy=True).returncode == 0


def _ci_checkout(tmp_path: Path, python_path: list[Path]) -> tuple[Path, Path]:
    """`.ci/run` in a copy of the checkout's layout whose `make` only logs its targets and
    whose `.venv/bin/python` is this interpreter with `python_path` first."""
    checkout = tmp_path / "checkout"
    (checkout / ".ci").mkdir(parents=True)
    shutil.copy2(ROOT / ".ci" / "run", checkout / ".ci" / "run")
    log = tmp_path / "make.log"
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "make").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    venv_bin = checkout / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    search = os.pathsep.join(str(path) for path in python_path)
    (venv_bin / "python").write_text(
        f'#!/bin/sh\nPYTHONPATH={search} exec {sys.executable} "$@"\n')
    for script in (tools / "make", venv_bin / "python"):
        script.chmod(0o755)
    return checkout, log


def _run_ci(checkout: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = _environment([], ci=False)
    env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}"
    return subprocess.run(["bash", str(checkout / ".ci" / "run")], capture_output=True,
                          text=True, env=env, timeout=120)


def test_ci_run_fails_before_the_tests_on_a_machine_without_rclpy(tmp_path):
    checkout, log = _ci_checkout(tmp_path, [_without_rclpy(tmp_path / "blocked")])
    result = _run_ci(checkout, tmp_path)
    assert result.returncode == 1
    assert "CI: rclpy does not import" in result.stderr
    assert "No module named 'rclpy'" in result.stderr
    assert log.read_text().split() == ["venv"]  # `make test` never ran


def test_ci_run_runs_make_test_where_rclpy_imports(tmp_path):
    checkout, log = _ci_checkout(tmp_path, [])
    result = _run_ci(checkout, tmp_path)
    assert result.returncode == 0, result.stderr
    assert log.read_text().split() == ["venv", "test"]
