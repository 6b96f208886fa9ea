"""Obstacles on the ground over real rclpy and Fast DDS, the node in its own process.

A client (rclpy and ROS messages only) is a 640x480 camera (fx = fy = 500, cx = 320,
cy = 240) 1.5 m above base_link looking ahead (`camera_extrinsics.front`), sending frames
of one bright box whose bottom edge is row 315: its ground contact is 1.5 * 500 / 75 = 10 m
ahead, on the centre line. The node's model scores brightness.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import numpy as np
import pytest
import rclpy
import yaml
from brightness_model import export_brightness_model
from builtin_interfaces.msg import Time
from nav_msgs.msg import OccupancyGrid
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import Listener, start_node_process, wait_until
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from visualization_msgs.msg import ImageMarker, Marker, MarkerArray

pytestmark = pytest.mark.ros
NODE = "/ood_perception_node"
CAMERA = "/front/image_raw"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
EXTRINSICS = [0.0, 0.0, 1.5, -0.5, 0.5, -0.5, 0.5]
BOX_ROWS, BOX_COLUMNS = (275, 316), (300, 340)  # bottom edge: row 315, centred on column 320
FRAMES = 30


@pytest.fixture
def client_node(ros_env):
    """The client: a node in its own rclpy context, spun on a thread."""
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("ground_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    thread.join(timeout=5)


def _stamp(index: int) -> Time:
    return Time(sec=1_700_000_000 + index, nanosec=0)


def _frame(index: int) -> tuple[Image, CameraInfo]:
    pixels = np.full((480, 640, 3), 30, np.uint8)
    pixels[slice(*BOX_ROWS), slice(*BOX_COLUMNS)] = 255
    header = Header(stamp=_stamp(index), frame_id="front_optical")
    image = Image(header=header, height=480, width=640, encoding="rgb8", step=640 * 3,
                  data=pixels.tobytes())
    info = CameraInfo(header=header, height=480, width=640, distortion_model="plumb_bob",
                      d=[0.0] * 5, k=[500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0],
                      p=[500.0, 0.0, 320.0, 0.0, 0.0, 500.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    return image, info


def _cells(grid: OccupancyGrid) -> tuple[np.ndarray, np.ndarray]:
    """The grid as rows x cols int8 and each cell centre's (x, y)."""
    info = grid.info
    cells = np.asarray(grid.data, np.int8).reshape(info.height, info.width)
    xs = info.origin.position.x + (np.arange(info.width) + 0.5) * info.resolution
    ys = info.origin.position.y + (np.arange(info.height) + 0.5) * info.resolution
    return cells, np.stack(np.meshgrid(xs, ys), -1)


def _at(cells: np.ndarray, centres: np.ndarray, x: float, y: float) -> int:
    row, col = np.unravel_index(np.argmin(np.hypot(*(centres - (x, y)).transpose(2, 0, 1))),
                                cells.shape)
    return int(cells[row, col])


def _stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    return stderr


def test_grid_marks_the_box_10_m_ahead_and_its_marker_id_is_stable(client_node, ros_env,
                                                                     tmp_path):
    model = export_brightness_model(tmp_path / "brightness.onnx")
    params = tmp_path / "ground.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "model_path": str(model), "image_topics": [CAMERA], "input_qos": "reliable",
        "camera_extrinsics": {"front": EXTRINSICS}}}}))
    process = start_node_process(["--ros-args", "--params-file", str(params)], ros_env)
    try:
        node = client_node
        listener = Listener(node, {f"{NODE}/obstacle_grid": OccupancyGrid,
                                   f"{NODE}/obstacle_positions": MarkerArray,
                                   f"{NODE}/obstacle_markers": ImageMarker})
        camera = node.create_publisher(Image, CAMERA, RELIABLE)
        info = node.create_publisher(CameraInfo, "/front/camera_info", RELIABLE)
        assert wait_until(lambda: camera.get_subscription_count() == 1
                          and info.get_subscription_count() == 1, 30.0), \
            process.stderr.read() if process.poll() is not None else "no subscription"

        # Like a camera driver: camera_info with every image, until the node has both.
        index, grid = 0, None
        deadline = time.monotonic() + 30.0
        while grid is None and time.monotonic() < deadline:
            image, calibration = _frame(index)
            info.publish(calibration)
            camera.publish(image)
            try:
                grid = listener.wait_for(f"{NODE}/obstacle_grid", lambda m, s=_stamp(index):
                                         m.header.stamp == s and 100 in m.data, 2.0)
            except AssertionError:
                index += 1
        assert grid is not None, "no grid with an obstacle"
        assert grid.header.frame_id == "base_link"
        cells, centres = _cells(grid)
        occupied = centres[cells == 100]
        distance = np.hypot(occupied[:, 0] - 10.0, occupied[:, 1])
        assert distance.max() <= 1.0, occupied[distance > 1.0]
        assert np.hypot(occupied[:, 0].mean() - 10.0, occupied[:, 1].mean()) <= 0.5
        assert _at(cells, centres, 10.0, 0.0) == 100
        assert _at(cells, centres, 6.0, 0.0) == 0  # road the camera sees, in front of the box
        assert _at(cells, centres, 20.0, 0.0) == -1  # hidden behind the box
        assert _at(cells, centres, 10.0, 9.0) == -1  # outside the view (6.4 m half-width)
        assert _at(cells, centres, 2.0, 0.0) == -1  # below the image's bottom edge

        # 30 more frames, each answered before the next: one box, one id throughout.
        ids, outlines = set(), set()
        first = index + 1
        for index in range(first, first + FRAMES):
            image, calibration = _frame(index)
            info.publish(calibration)
            camera.publish(image)
            positions = listener.wait_for(f"{NODE}/obstacle_positions",
                                          lambda m, s=_stamp(index): bool(m.markers)
                                          and m.markers[0].header.stamp == s)
            added = [m for m in positions.markers if m.action == Marker.ADD]
            assert len(added) == 1 and positions.markers[0].header.frame_id == "base_link"
            assert abs(added[0].pose.position.x - 10.0 - added[0].scale.x / 2) < 0.5
            assert abs(added[0].pose.position.y) < 0.5 and 0.5 < added[0].scale.y < 1.2
            ids.add(added[0].id)
            outline = listener.wait_for(f"{NODE}/obstacle_markers",
                                        lambda m, s=_stamp(index): m.header.stamp == s)
            outlines.add(outline.id)
        assert len(ids) == 1 and len(outlines) == 1 and ids == outlines, (ids, outlines)
    finally:
        stderr = _stop(process)
    assert process.returncode == 0, stderr[-2000:]


@pytest.mark.parametrize("extrinsics, message", [
    ({"rear": EXTRINSICS}, "camera_extrinsics.rear name(s) no camera of this node"),
    ({"front": [0.0, 0.0, 1.5]}, "camera_extrinsics.front must be 7 finite numbers"),
])
def test_bad_extrinsics_stop_start_up_with_one_line(ros_env, tmp_path, extrinsics, message):
    model = export_brightness_model(tmp_path / "brightness.onnx")
    params = tmp_path / "bad.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "model_path": str(model), "image_topics": [CAMERA],
        "camera_extrinsics": extrinsics}}}))
    process = start_node_process(["--ros-args", "--params-file", str(params)], ros_env)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], stderr[-2000:]
