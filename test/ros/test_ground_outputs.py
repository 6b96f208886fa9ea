"""The node's ground outputs on a real rclpy node: two cameras fused into one grid, their
markers apart by namespace, ids per camera."""

from __future__ import annotations

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from nav_msgs.msg import OccupancyGrid
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from ros_harness import wait_until
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from ood_perception.core.ground import CameraPose
from ood_perception.core.pipeline import FrameResult
from ood_perception.core.postprocess import Obstacle
from ood_perception.ros.ground_outputs import GroundOutputs
from ood_perception.ros.parameters import NodeConfig
from ood_perception.ros.publishing import Publishers

pytestmark = pytest.mark.ros
LEVEL = [-0.5, 0.5, -0.5, 0.5]
# The right camera looks along -y (turned 90 degrees right), 1.5 m up.
RIGHT = Rotation.from_euler("z", -90, degrees=True) * Rotation.from_quat(LEVEL)
EXTRINSICS = {"front": [0.0, 0.0, 1.5, *LEVEL], "right": [0.0, 0.0, 1.5, *RIGHT.as_quat()]}
INFO = CameraInfo(height=480, width=640, distortion_model="plumb_bob", d=[0.0] * 5,
                  k=[500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0])


def _box_frame() -> FrameResult:
    mask = np.zeros((480, 640), np.uint8)
    mask[275:316, 300:340] = 255  # 10 m along the camera's axis
    obstacle = Obstacle(id=1, area=1640, score_max=1.0, score_mean=1.0, bbox=(300, 275, 40, 41),
                        centroid=(319.5, 295.0))
    return FrameResult(anomaly_score=None, semantic=None, mask=mask, obstacles=[obstacle])


@pytest.fixture
def node(ros_env):
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node(
        "ground_test", context=context, automatically_declare_parameters_from_overrides=True,
        parameter_overrides=[Parameter(f"camera_extrinsics.{name}", value=list(map(float, v)))
                             for name, v in EXTRINSICS.items()])
    yield node
    node.destroy_node()
    rclpy.try_shutdown(context=context)


def test_two_cameras_fuse_into_one_grid_with_markers_per_camera(node):
    config = NodeConfig.from_values({"model_path": "m.onnx", "image_topics": [
        "/front/image_raw", "/right/image_raw"], "grid_width": 30.0})
    ground = GroundOutputs(node, Publishers(node, lifecycle=False))
    ground.open(config)
    grids, markers = [], []
    node.create_subscription(OccupancyGrid, "/ground_test/obstacle_grid", grids.append, 10)
    node.create_subscription(MarkerArray, "/ground_test/obstacle_positions", markers.append, 10)
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    assert wait_until(lambda: ground.wanted(), 10.0)
    for index in range(2):
        header = Header(stamp=Time(sec=100 + index), frame_id="optical")
        for camera in range(2):
            placed = ground.process(camera, header, INFO, _box_frame())
            assert [o.id for o in placed.result.obstacles] == [1]  # ids are per camera
            place = placed.ground[0]
            expected = (9.93, 0.01) if camera == 0 else (0.01, -9.93)  # 10 m along the axis
            assert abs(place.distance - expected[0]) < 0.05
            assert abs(place.lateral - expected[1]) < 0.05 and abs(place.width - 0.81) < 0.05
    assert wait_until(lambda: (executor.spin_once(timeout_sec=0.05), len(grids) >= 4)[1], 10.0)
    grid = grids[-1]
    cells = np.asarray(grid.data, np.int8).reshape(grid.info.height, grid.info.width)
    xs = grid.info.origin.position.x + (np.arange(grid.info.width) + 0.5) * 0.2
    ys = grid.info.origin.position.y + (np.arange(grid.info.height) + 0.5) * 0.2
    centres = np.stack(np.meshgrid(xs, ys), -1)
    occupied = centres[cells == 100]
    near_front = np.hypot(occupied[:, 0] - 10.0, occupied[:, 1]) < 1.0
    near_right = np.hypot(occupied[:, 0], occupied[:, 1] + 10.0) < 1.0
    assert near_front.any() and near_right.any() and (near_front | near_right).all()

    def at(x: float, y: float) -> int:
        return int(cells[np.argmin(np.abs(ys - y)), np.argmin(np.abs(xs - x))])

    assert at(6.0, 0.0) == 0 and at(2.0, -6.0) == 0  # seen free by the front, by the right
    assert at(6.0, 6.0) == -1  # left of the front camera's view: nobody sees it
    assert wait_until(lambda: (executor.spin_once(timeout_sec=0.05), len(markers) >= 4)[1], 10)
    namespaces = {m.ns for array in markers for m in array.markers if m.action == Marker.ADD}
    assert namespaces == {"ood_perception/obstacles/front", "ood_perception/obstacles/right"}
    executor.shutdown()
    ground.close()
    assert ground.publishers == {}


def test_extrinsics_poses_match_the_quaternion_the_test_uses():
    pose = CameraPose.from_extrinsics(EXTRINSICS["right"])
    np.testing.assert_allclose(pose.matrix @ [0, 0, 1], [0, -1, 0], atol=1e-9)
