"""What a vehicle integrator checks, from a client process apart from the node process.

The client (`ros_harness.ClientNode`) uses only rclpy and ROS messages (no project code):
QoS overrides from a params file, exact frame accounting over a reliable burst, per-camera
health turning ERROR when the camera stops, camera_info paired with answered frames, sim time
from /clock, and the lifecycle executable answering only once configured and active.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import ClientNode, Listener, start_node_process, wait_until
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from visualization_msgs.msg import ImageMarker

pytestmark = pytest.mark.ros
NODE = "/ood_perception_node"
CAMERA = "/front/image_raw"
BURST = 2000
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture
def client(ros_env):
    client = ClientNode("vehicle_client")
    yield client
    client.close()


def _params(tmp_path: Path, model: Path, **extra) -> Path:
    path = tmp_path / "vehicle.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "model_path": str(model), "image_topics": [CAMERA], **extra}}}))
    return path


def _frame(stamp_ns: int, height: int = 24, width: int = 32) -> Image:
    pixels = np.full((height, width, 3), 128, np.uint8)
    pixels[5:19, 9:23] = (255, 0, 255)  # 14x14: above min_obstacle_area 100
    stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return Image(header=Header(stamp=stamp, frame_id="front_optical"), height=height,
                 width=width, encoding="rgb8", step=width * 3, data=pixels.tobytes())


def _stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    return stderr


def _counted(message: DiagnosticArray) -> int:
    """frames_total + drops_total summed over the statuses that carry them."""
    total = 0
    for status in message.status:
        values = {v.key: v.value for v in status.values}
        if "frames_total" in values:
            total += int(values["frames_total"]) + int(values["drops_total"])
    return total


def _camera_status(message: DiagnosticArray) -> DiagnosticStatus:
    return next(s for s in message.status if "camera front" in s.name)


def test_reliable_override_exact_accounting_health_and_camera_info(client, ros_env,
                                                                  tiny_model_path, tmp_path):
    params = _params(tmp_path, tiny_model_path, min_rate_hz=5.0, qos_overrides={
        CAMERA: {"subscription": {"reliability": "reliable"}}})
    process = start_node_process(["--ros-args", "--params-file", str(params)], ros_env)
    try:
        node = client.node
        listener = Listener(node, {"/diagnostics": DiagnosticArray,
                                   f"{NODE}/camera_info": CameraInfo,
                                   f"{NODE}/anomaly_score": Image,
                                   f"{NODE}/obstacle_markers": ImageMarker})
        camera = node.create_publisher(Image, CAMERA, RELIABLE)
        info = node.create_publisher(CameraInfo, "/front/camera_info", RELIABLE)
        assert wait_until(lambda: camera.get_subscription_count() == 1, 30.0), \
            process.stderr.read() if process.poll() is not None else "no subscription"
        (endpoint,) = node.get_subscriptions_info_by_topic(CAMERA)
        assert endpoint.qos_profile.reliability == ReliabilityPolicy.RELIABLE

        # camera_info goes out with the header of an answered frame.
        assert wait_until(lambda: info.get_subscription_count() == 1, 10.0)
        calibration = CameraInfo(header=Header(frame_id="front_optical"), height=24, width=32,
                                 k=[50.0, 0.0, 16.0, 0.0, 50.0, 12.0, 0.0, 0.0, 1.0])
        warmup = _frame(time.time_ns())
        sent = 0
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:  # until a frame comes back with the calibration
            info.publish(calibration)
            camera.publish(warmup)
            sent += 1
            try:
                paired = listener.wait_for(f"{NODE}/camera_info", lambda m: m.header.stamp
                                           == warmup.header.stamp, 1.0)
                break
            except AssertionError:
                continue
        assert (paired.height, paired.width, paired.k[0]) == (24, 32, 50.0)
        marker = listener.wait_for(f"{NODE}/obstacle_markers",
                                   lambda m: m.header.stamp == warmup.header.stamp)
        assert len(marker.points) == 8  # the magenta square's outline

        # Exact accounting over a reliable burst: baseline once the warm-up has settled.
        def settled_total(expected=None, timeout=20.0) -> int:
            start = len(listener.messages["/diagnostics"])
            seen = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                messages = listener.messages["/diagnostics"][start:]
                seen = [_counted(m) for m in messages]
                if expected is None and len(seen) >= 2 and seen[-1] == seen[-2]:
                    return seen[-1]
                if expected is not None and seen.count(expected) >= 2:
                    return expected
                time.sleep(0.2)
            return seen[-1] if seen else -1

        baseline = settled_total()
        assert 1 <= baseline <= sent
        first_ns = time.time_ns()
        for index in range(BURST):
            camera.publish(_frame(first_ns + index * 1000))
        stopped, reports_at_stop = time.monotonic(), len(listener.messages["/diagnostics"])
        total = settled_total(expected=baseline + BURST)
        assert total - baseline == BURST

        last = listener.messages["/diagnostics"][-1]
        status = _camera_status(last)
        values = {v.key: v.value for v in status.values}
        assert status.hardware_id == CAMERA and values["topic"] == CAMERA
        assert int(values["frames_total"]) > 0 and int(values["drops_total"]) > 0, values
        # The camera has stopped: its status turns ERROR within 5 s.
        error = listener.wait_for("/diagnostics", lambda m: _camera_status(m).level
                                  == DiagnosticStatus.ERROR, 10.0, after=reports_at_stop)
        assert time.monotonic() - stopped < 5.0
        assert "stalled" in _camera_status(error).message
    finally:
        stderr = _stop(process)
    assert process.returncode == 0, stderr


def test_lifecycle_node_answers_only_after_configure_and_activate(client, ros_env,
                                                                 tiny_model_path, tmp_path):
    params = _params(tmp_path, tiny_model_path)
    process = start_node_process(["--ros-args", "--params-file", str(params)], ros_env,
                                 module="ood_perception.ros.lifecycle_node")
    try:
        node = client.node
        listener = Listener(node, {f"{NODE}/anomaly_score": Image,
                                   "/diagnostics": DiagnosticArray})
        camera = node.create_publisher(Image, CAMERA, RELIABLE)
        change = node.create_client(ChangeState, f"{NODE}/change_state")
        assert change.wait_for_service(timeout_sec=30.0)

        def transition(transition_id: int) -> bool:
            future = change.call_async(ChangeState.Request(
                transition=Transition(id=transition_id)))
            assert wait_until(future.done, 60.0)
            return future.result().success

        def answered_within(seconds: float) -> bool:
            frame = _frame(time.time_ns())
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                camera.publish(frame)
                try:
                    listener.wait_for(f"{NODE}/anomaly_score",
                                      lambda m: m.header.stamp == frame.header.stamp, 0.5)
                    return True
                except AssertionError:
                    continue
            return False

        assert camera.get_subscription_count() == 0
        assert not answered_within(1.0)
        assert transition(Transition.TRANSITION_CONFIGURE)
        assert camera.get_subscription_count() == 0 and not answered_within(1.5)
        assert listener.messages["/diagnostics"] == []
        assert transition(Transition.TRANSITION_ACTIVATE)
        assert answered_within(15.0)
        assert listener.messages["/diagnostics"] or listener.wait_for("/diagnostics")
        assert transition(Transition.TRANSITION_DEACTIVATE)
        assert wait_until(lambda: camera.get_subscription_count() == 0, 10.0)
        assert not answered_within(1.0)
        assert transition(Transition.TRANSITION_CLEANUP)
    finally:
        stderr = _stop(process)
    assert process.returncode == 0, stderr


def test_sim_time_node_measures_latency_against_the_replayed_bag(client, ros_env,
                                                                tiny_model_path, tmp_path):
    """`replay --live` publishes the bag's /clock, so latency is bag time, not years."""
    from bag_files import write_images

    start_ns = 1_700_000_000_000_000_000  # November 2023
    frames = [(CAMERA, start_ns + i * 100_000_000, np.full((24, 32, 3), 90, np.uint8))
              for i in range(40)]
    bag = tmp_path / "drive"
    write_images(bag, frames)
    params = _params(tmp_path, tiny_model_path, use_sim_time=True, diagnostics_period=0.2)
    process = start_node_process(["--ros-args", "--params-file", str(params)], ros_env)
    try:
        listener = Listener(client.node, {"/diagnostics": DiagnosticArray, "/clock": Clock})
        replay = subprocess.run([sys.executable, "-m", "ood_perception.cli.main", "replay",
                                 str(bag), "--live"], capture_output=True, text=True,
                                timeout=120)
        assert replay.returncode == 0, replay.stderr
        # Four seconds of bag: the listener's own /clock subscription may be matched late.
        listener.wait_for("/clock", lambda m: 0 <= m.clock.sec - start_ns // 10**9 <= 4)

        def latency(message: DiagnosticArray) -> float:
            values = {v.key: v.value for v in _camera_status(message).values}
            return float(values["latency_p50_ms"])

        answered = listener.wait_for("/diagnostics", lambda m: latency(m) == latency(m), 10.0)
        assert 0.0 <= latency(answered) < 1000.0
    finally:
        stderr = _stop(process)
    assert process.returncode == 0, stderr
