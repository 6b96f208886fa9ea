"""On a CI run, a ROS test that does not run fails the run: a broken ROS install must not pass
as a row of skips.

A pytest plugin (test/conftest.py loads it). A run is a CI run when `CI` is true (set by CI
services) or `OOD_PERCEPTION_REQUIRE_ROS=1` (set by `.ci/run`). Then a test marked `ros`
that is skipped or deselected, a test module under `test/ros/` skipped at collection, and any
skip caused by a ROS package that does not import, are failures with the reason.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REQUIRE_ENV = "OOD_PERCEPTION_REQUIRE_ROS"
# The ROS Python packages: only ood_perception/ros/ imports them (test/test_layout.py).
ROS_PACKAGES = {"rclpy", "rcl_interfaces", "builtin_interfaces", "sensor_msgs", "std_msgs",
                "diagnostic_msgs", "lifecycle_msgs", "visualization_msgs", "vision_msgs",
                "geometry_msgs", "rosgraph_msgs", "nav_msgs", "tf2_ros", "launch", "launch_ros"}
ROS_TEST_FOLDER = Path(__file__).resolve().parent / "ros"
# pytest.importorskip's reason: "could not import 'sensor_msgs.msg': No module named ...".
_IMPORT_SKIP = re.compile(r"could not import '([\w.]+)'")
_DESELECTED = pytest.StashKey[list]()
FIX = ("ROS tests must run on CI: install the ROS part (`make venv` installs the `ros` extra, "
       "or source a ROS 2 distribution) so that rclpy imports")


def ros_required() -> bool:
    """Whether this run is a CI run, where every ROS test must run."""
    truthy = ("1", "true", "yes")
    return (os.environ.get("CI", "").lower() in truthy
            or os.environ.get(REQUIRE_ENV, "").lower() in truthy)


def _names_ros_package(reason: str) -> bool:
    match = _IMPORT_SKIP.search(reason)
    return bool(match) and match.group(1).split(".")[0] in ROS_PACKAGES


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _under_ros_tests(path: Path) -> bool:
    return path.resolve().is_relative_to(ROS_TEST_FOLDER)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if (ros_required() and report.skipped and not hasattr(report, "wasxfail")):
        reason = _skip_reason(report)
        if item.get_closest_marker("ros") or _names_ros_package(reason):
            report.outcome = "failed"
            report.longrepr = f"ROS test skipped on a CI run ({reason}). {FIX}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    report = yield
    if ros_required() and report.skipped and isinstance(collector, pytest.Module):
        reason = _skip_reason(report)
        if _under_ros_tests(collector.path) or _names_ros_package(reason):
            report.outcome = "failed"
            report.longrepr = f"ROS test module skipped on a CI run ({reason}). {FIX}"
    return report


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("ros") or _under_ros_tests(item.path):
            item.config.stash.setdefault(_DESELECTED, []).append(item.nodeid)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    deselected = config.stash.get(_DESELECTED, [])
    if ros_required() and deselected:
        terminalreporter.section("ROS tests deselected on a CI run", sep="=", red=True)
        for nodeid in deselected:
            terminalreporter.line(nodeid)
        terminalreporter.line(f"{len(deselected)} ROS test(s) deselected (-m/-k). "
                              "A CI run runs every ROS test.", red=True)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if ros_required() and session.config.stash.get(_DESELECTED, []):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
