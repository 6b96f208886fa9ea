"""The node's obstacles on the ground: tracking per camera, camera poses, the fused
`~/obstacle_grid` and the `~/obstacle_positions` markers, over the ROS-free `core.ground`
and `core.tracking`.

A camera's pose in `base_frame` comes from its `camera_extrinsics.<camera>` parameter, else
from TF (`header.frame_id` -> `base_frame`) where tf2_ros is installed; its intrinsics from
its newest camera_info. A camera without either still gets tracked ids, but no ground
position and no part in the grid (a throttled warning says why). The grid fuses each
camera's newest layer, dropping layers older than `LAYER_MAX_AGE_S` behind the newest frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from nav_msgs.msg import OccupancyGrid
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.time import Time
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ood_perception.core.ground import (
    CameraModel,
    CameraPose,
    GroundObstacle,
    GroundView,
    fuse,
    locate,
)
from ood_perception.core.pipeline import FrameResult
from ood_perception.core.tracking import Track, Tracker, reported, tracked_result
from ood_perception.errors import ConfigurationError
from ood_perception.ros.ground_messages import occupancy_grid, position_markers
from ood_perception.ros.messages import stamp_seconds
from ood_perception.ros.parameters import EXTRINSICS_PREFIX, NodeConfig
from ood_perception.ros.qos import OUTPUT_QOS

try:  # no PyPI wheel: TF where a ROS distribution installs it, else camera_extrinsics
    import tf2_ros
except ImportError:
    tf2_ros = None

GRID = "obstacle_grid"
POSITIONS = "obstacle_positions"
LAYER_MAX_AGE_S = 1.0
WARN_THROTTLE_S = 5.0


@dataclass
class _CameraGround:
    """One camera's tracker, pose, grid view and newest layer."""

    name: str
    tracker: Tracker
    pose: CameraPose | None  # from camera_extrinsics; None: ask TF per frame
    view: GroundView | None = None
    layer: np.ndarray | None = None
    layer_stamp: float = 0.0
    shown: set[int] = field(default_factory=set)  # ids in the last 3-D markers


@dataclass(frozen=True)
class GroundFrame:
    """A frame's result with tracked obstacles (ids = track ids) and where each stands."""

    result: FrameResult
    ground: list[GroundObstacle | None]


class GroundOutputs:
    """Opened at configure (publishers, poses, trackers), closed at cleanup; `process` once
    per frame. `publishers`: the node's `publishing.Publishers`."""

    def __init__(self, node: Node, publishers):
        self.node, self._publishers = node, publishers
        self.publishers: dict = {}
        self.cameras: list[_CameraGround] = []
        self._tf = None

    def open(self, config: NodeConfig) -> None:
        self.settings = config.ground
        poses = camera_poses(self.node, config.camera_names)
        self.cameras = [_CameraGround(name, Tracker(self.settings.tracking), poses.get(name))
                        for name in config.camera_names]
        if tf2_ros is not None and len(poses) < len(self.cameras):
            buffer = tf2_ros.Buffer()
            self._tf = (buffer, tf2_ros.TransformListener(buffer, self.node))
        create = self._publishers.create
        self.publishers = {GRID: create(OccupancyGrid, f"~/{GRID}", OUTPUT_QOS),
                           POSITIONS: create(MarkerArray, f"~/{POSITIONS}", OUTPUT_QOS)}

    def close(self) -> None:
        for publisher in self.publishers.values():
            self._publishers.destroy(publisher)
        self.publishers, self.cameras, self._tf = {}, [], None

    def wanted(self) -> bool:
        """Whether anyone reads the grid or the 3-D markers (then obstacles are computed)."""
        return any(p.get_subscription_count() > 0 for p in self.publishers.values())

    def process(self, index: int, header: Header, camera_info, result: FrameResult
                ) -> GroundFrame:
        """Track `result`'s obstacles, place them on the ground, publish grid and markers."""
        if result.mask is None:
            return GroundFrame(result, [])
        camera = self.cameras[index]
        settings = self.settings
        view = self._view(camera, header, camera_info, result.mask.shape)
        ground = [locate(o, result.mask, view.camera, view.pose) if view else None
                  for o in result.obstacles]
        tracks = reported(camera.tracker.update(result.obstacles, ground, result.mask.shape),
                          settings.tracking)
        tracked = tracked_result(result, tracks, settings.tracking)
        stamp = stamp_seconds(header)
        base = Header(stamp=header.stamp, frame_id=settings.base_frame)
        if view is not None and self.publishers[GRID].get_subscription_count() > 0:
            camera.layer = view.layer(result.mask, [t.ground for t in tracks if t.ground])
            camera.layer_stamp = stamp
        self._publish(camera, base, stamp, tracks)
        return GroundFrame(tracked, [t.ground for t in tracks])

    def _publish(self, camera: _CameraGround, header: Header, stamp: float,
                 tracks: list[Track]) -> None:
        grid = self.publishers[GRID]
        if grid.get_subscription_count() > 0:
            layers = [c.layer for c in self.cameras if c.layer is not None
                      and stamp - c.layer_stamp <= LAYER_MAX_AGE_S]
            if layers:
                grid.publish(occupancy_grid(header, self.settings.grid, fuse(layers)))
        positions = self.publishers[POSITIONS]
        if positions.get_subscription_count() > 0:
            ids = {t.id for t in tracks if t.ground is not None}
            positions.publish(position_markers(header, camera.name, tracks, camera.shown - ids))
            camera.shown = ids

    def _view(self, camera: _CameraGround, header: Header, camera_info,
              size: tuple[int, int]) -> GroundView | None:
        """The camera's grid view for this frame (rebuilt when calibration or pose change)."""
        if camera_info is None:
            return self._skip(camera, "no camera_info received yet")
        pose = camera.pose or self._tf_pose(header)
        if pose is None:
            return self._skip(camera, f"no parameter {EXTRINSICS_PREFIX}{camera.name} and no "
                              f"TF {header.frame_id!r} -> {self.settings.base_frame!r}")
        try:
            model = CameraModel.from_camera_info(camera_info).resized(size)
        except ConfigurationError as error:
            return self._skip(camera, f"camera_info: {error}")
        view = camera.view
        if view is None or view.camera != model or view.pose != pose:
            camera.view = view = GroundView(self.settings.grid, model, pose)
        return view

    def _tf_pose(self, header: Header) -> CameraPose | None:
        if self._tf is None:
            return None
        try:  # tf2_ros: lookup_transform(target, source, time) maps source points to target
            transform = self._tf[0].lookup_transform(self.settings.base_frame, header.frame_id,
                                                     Time()).transform
        except tf2_ros.TransformException:
            return None
        t, q = transform.translation, transform.rotation
        return CameraPose.from_extrinsics([t.x, t.y, t.z, q.x, q.y, q.z, q.w])

    def _skip(self, camera: _CameraGround, reason: str) -> None:
        """No ground place this frame; said (throttled) while the grid or markers are read."""
        if self.wanted():
            self.node.get_logger().warning(f"camera {camera.name}: obstacles not on the "
                                           f"ground: {reason}",
                                           throttle_duration_sec=WARN_THROTTLE_S)
        return None


def camera_poses(node: Node, cameras: tuple[str, ...]) -> dict[str, CameraPose]:
    """`camera_extrinsics.<camera>` parameters -> poses; one for no camera of this node is a
    typo and raises `ConfigurationError`, as does a malformed one."""
    given = [name for name in node.list_parameters([], 0).names
             if name.startswith(EXTRINSICS_PREFIX)]
    unknown = sorted(name for name in given if name[len(EXTRINSICS_PREFIX):] not in cameras)
    if unknown:
        raise ConfigurationError(f"{', '.join(unknown)} name(s) no camera of this node; its "
                                 f"cameras: {', '.join(cameras)}")
    poses = {}
    for name in given:
        value = node.get_parameter(name).value
        if node.get_parameter(name).type_ not in (Parameter.Type.DOUBLE_ARRAY,
                                                  Parameter.Type.INTEGER_ARRAY):
            raise ConfigurationError(f"parameter {name} must be 7 numbers [x, y, z, qx, qy, "
                                     f"qz, qw], got {value!r}")
        poses[name[len(EXTRINSICS_PREFIX):]] = CameraPose.from_extrinsics(
            list(value), f"parameter {name}")
    return poses
