"""The node process as the real `ros2` CLI and vehicle tools meet it, from a client process.

There is no ros2cli wheel, so the client makes the service calls its verbs make
(ros2cli `ros2param/api`): `ros2 param dump` = `list_parameters` (no prefixes, recursive)
then `get_parameters` of every name; `get` = `get_parameters`; `set` = `set_parameters` with
the value YAML-parsed (`1` is an integer). Also: a remapped camera, `~/score_camera_info` as
the only subscription, health under sim time when `/clock` stops, a stretched aspect ratio,
and the lifecycle `shutdown` ending the process.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, ListParameters, SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import ClientNode, Listener, start_node_process, wait_until
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ood_perception.ros.parameters import PARAMETERS

pytestmark = pytest.mark.ros
NODE = "/ood_perception_node"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture
def client(ros_env):
    client = ClientNode("cli_client")
    yield client
    client.close()


def _params(tmp_path: Path, model: Path, **extra) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "model_path": str(model), **extra}}}))
    return path


def _frame(stamp_ns: int, height: int = 24, width: int = 32) -> Image:
    pixels = np.full((height, width, 3), 128, np.uint8)
    stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return Image(header=Header(stamp=stamp, frame_id="front_optical"), height=height,
                 width=width, encoding="rgb8", step=width * 3, data=pixels.tobytes())


def _stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    return stderr


def _camera_status(message: DiagnosticArray) -> DiagnosticStatus:
    return next(s for s in message.status if ": camera " in s.name)


def _values(status: DiagnosticStatus) -> dict[str, str]:
    return {v.key: v.value for v in status.values}


def _dump(client: ClientNode) -> dict[str, ParameterValue]:
    """What `ros2 param dump` asks: every name, then every value."""
    every = ListParameters.Request(prefixes=[], depth=ListParameters.Request.DEPTH_RECURSIVE)
    names = client.call(ListParameters, f"{NODE}/list_parameters", every).result.names
    values = client.call(GetParameters, f"{NODE}/get_parameters",
                         GetParameters.Request(names=list(names))).values
    return dict(zip(names, values, strict=True))


def test_remapped_camera_params_services_model_size_calibration_and_aspect(
        client, ros_env, tiny_model_path, tmp_path):
    """One node process: its camera remapped, the score at the model's size, 4:3 frames on a
    3:2 model input, driven through the parameter services."""
    params = _params(tmp_path, tiny_model_path, score_resolution="model",
                     diagnostics_period=0.2)
    process = start_node_process(["--ros-args", "--params-file", str(params),
                                  "-r", "/camera/image_raw:=/front/image_raw"], ros_env)
    try:
        node = client.node
        listener = Listener(node, {"/diagnostics": DiagnosticArray,
                                   f"{NODE}/camera_info": CameraInfo,
                                   f"{NODE}/score_camera_info": CameraInfo})
        camera = node.create_publisher(Image, "/front/image_raw", RELIABLE)
        info = node.create_publisher(CameraInfo, "/front/camera_info", RELIABLE)
        assert wait_until(lambda: camera.get_subscription_count() == 1, 30.0), \
            process.stderr.read() if process.poll() is not None else "no subscription"
        # The calibration beside the remapped image topic, not beside /camera/image_raw.
        assert wait_until(lambda: info.get_subscription_count() == 1, 10.0)

        # `ros2 param dump`: every parameter, each with a value of its declared type.
        dumped = _dump(client)
        assert set(PARAMETERS) <= set(dumped)
        assert all(value.type != ParameterType.PARAMETER_NOT_SET for value in dumped.values())
        assert dumped["camera_names"].type == ParameterType.PARAMETER_STRING_ARRAY
        assert list(dumped["camera_names"].string_array_value) == []
        assert dumped["gating_classes"].type == ParameterType.PARAMETER_INTEGER_ARRAY
        # `get score_threshold`: the threshold in use (the tiny model's score_range midpoint).
        threshold = dumped["score_threshold"]
        assert threshold.type == ParameterType.PARAMETER_DOUBLE
        assert threshold.double_value == 0.5
        # `set score_threshold 1`: YAML makes it an integer; it stays a double.
        result = client.call(SetParameters, f"{NODE}/set_parameters", SetParameters.Request(
            parameters=[Parameter(name="score_threshold", value=ParameterValue(
                type=ParameterType.PARAMETER_INTEGER, integer_value=1))])).results[0]
        assert result.successful, result.reason
        (after,) = client.call(GetParameters, f"{NODE}/get_parameters",
                               GetParameters.Request(names=["score_threshold"])).values
        assert (after.type, after.double_value) == (ParameterType.PARAMETER_DOUBLE, 1.0)
        # A parameter fixed at start-up stays so, though it was given a value at declaration.
        fixed = client.call(SetParameters, f"{NODE}/set_parameters", SetParameters.Request(
            parameters=[Parameter(name="camera_names", value=ParameterValue(
                type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=["x"]))]))
        assert not fixed.results[0].successful

        # Only ~/camera_info and ~/score_camera_info are subscribed: no ~/anomaly_score reader.
        assert node.count_subscribers(f"{NODE}/anomaly_score") == 0
        info.publish(CameraInfo(header=Header(frame_id="front_optical"), height=24, width=32,
                                k=[30.0, 0.0, 16.0, 0.0, 30.0, 12.0, 0.0, 0.0, 1.0]))
        deadline = time.monotonic() + 20.0
        scaled = None
        while scaled is None and time.monotonic() < deadline:
            frame = _frame(time.time_ns())
            camera.publish(frame)
            try:
                scaled = listener.wait_for(f"{NODE}/score_camera_info",
                                           lambda m, f=frame: m.header.stamp == f.header.stamp,
                                           0.5)
            except AssertionError:
                continue
        assert scaled is not None, "no ~/score_camera_info"
        assert (scaled.height, scaled.width) == (64, 96)  # the tiny graph's input size
        paired = listener.wait_for(f"{NODE}/camera_info",
                                   lambda m: m.header.stamp == frame.header.stamp)
        assert (paired.height, paired.width) == (24, 32)

        # Diagnostics name the resolved topic and say the frames are stretched.
        report = listener.wait_for("/diagnostics", lambda m: _values(_camera_status(m)).get(
            "camera_info") == "received", after=len(listener.messages["/diagnostics"]))
        status = _camera_status(report)
        assert status.hardware_id == "/front/image_raw"
        assert _values(status)["topic"] == "/front/image_raw"
        assert "stretched" in status.message and "stretched" in _values(status)["resize"]
    finally:
        stderr = _stop(process)
    assert process.returncode == 0, stderr
    warnings = [line for line in stderr.splitlines() if "stretched" in line]
    assert len(warnings) == 1, warnings  # once, at the first frame
    assert "resize_mode letterbox or crop" in warnings[0]


def test_sim_time_health_runs_without_clock_and_turns_error_when_the_bag_stops(
        client, ros_env, tiny_model_path, tmp_path):
    params = _params(tmp_path, tiny_model_path, use_sim_time=True, diagnostics_period=0.2,
                     image_topics=["/front/image_raw"])
    process = start_node_process(["--ros-args", "--params-file", str(params)], ros_env)
    try:
        node = client.node
        listener = Listener(node, {"/diagnostics": DiagnosticArray,
                                   f"{NODE}/anomaly_score": Image})
        # Reports come before any /clock: the diagnostics timer runs on the steady clock.
        listener.wait_for("/diagnostics", timeout=30.0)
        camera = node.create_publisher(Image, "/front/image_raw", RELIABLE)
        clock = node.create_publisher(Clock, "/clock", 10)
        assert wait_until(lambda: camera.get_subscription_count() == 1, 10.0)
        # A "bag" plays: sim time and frames stamped with it, then it ends.
        sim_ns = 1_700_000_000_000_000_000
        answered = 0
        deadline = time.monotonic() + 20.0
        while answered < 3 and time.monotonic() < deadline:
            sim_ns += 100_000_000
            clock.publish(Clock(clock=Time(sec=sim_ns // 10**9, nanosec=sim_ns % 10**9)))
            frame = _frame(sim_ns)
            camera.publish(frame)
            try:
                listener.wait_for(f"{NODE}/anomaly_score",
                                  lambda m, f=frame: m.header.stamp == f.header.stamp, 0.5)
                answered += 1
            except AssertionError:
                continue
        stopped = time.monotonic()
        assert answered == 3
        ok = listener.wait_for("/diagnostics", lambda m: _camera_status(m).level
                               == DiagnosticStatus.OK, 10.0)
        error = listener.wait_for("/diagnostics", lambda m: _camera_status(m).level
                                  == DiagnosticStatus.ERROR, 10.0,
                                  after=listener.messages["/diagnostics"].index(ok))
        assert time.monotonic() - stopped < 5.0
        assert "stalled" in _camera_status(error).message
    finally:
        stderr = _stop(process)
    assert process.returncode == 0, stderr


def test_lifecycle_shutdown_ends_the_process(client, ros_env, tiny_model_path, tmp_path):
    params = _params(tmp_path, tiny_model_path)
    process = start_node_process(["--ros-args", "--params-file", str(params)], ros_env,
                                 module="ood_perception.ros.lifecycle_node")
    try:
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE,
                           Transition.TRANSITION_ACTIVE_SHUTDOWN):
            response = client.call(ChangeState, f"{NODE}/change_state", ChangeState.Request(
                transition=Transition(id=transition)))
            assert response.success, transition
        process.wait(timeout=30)
    finally:
        stderr = _stop(process)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
