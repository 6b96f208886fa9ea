"""Obstacles on the ground: image contacts -> vehicle-frame positions and an occupancy grid.

Each obstacle stands on the flat ground plane z = 0 of the vehicle's `base_frame` (REP 103:
x forward, y left, z up). The bottom of its mask in each image column is where it touches
the ground; that pixel's lower edge, undistorted with the camera_info's K and D, is a ray of
the camera's optical frame (REP 103: z forward, x right, y down) that the camera pose
(base_frame <- optical frame, as `static_transform_publisher` takes it) carries to the
ground. The grid runs the other way: every cell centre is projected into the image once per
camera geometry, and each frame looks up whether that pixel is an obstacle, hidden behind
one, or free ground the camera sees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ood_perception.core.intrinsics import scale_intrinsics
from ood_perception.core.postprocess import Obstacle
from ood_perception.errors import ConfigurationError

# OccupancyGrid cell values (nav_msgs: 0..100 occupancy probability, -1 unknown).
OCCUPIED, FREE, UNKNOWN = 100, 0, -1
# camera_info distortion models (sensor_msgs/distortion_models.hpp) handled here.
PINHOLE_MODELS = ("", "plumb_bob", "rational_polynomial")
FISHEYE_MODEL = "equidistant"
# Rays this close to parallel with the ground (|z| per metre along the ray) never reach it.
MIN_DOWNWARD = 1e-6


def rotation_from_quaternion(qx: float, qy: float, qz: float, qw: float) -> np.ndarray:
    """3x3 rotation of a (normalised) quaternion, x y z w as tf2 and geometry_msgs order it."""
    norm = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
    if not math.isfinite(norm) or norm < 1e-9:
        raise ConfigurationError(f"quaternion {[qx, qy, qz, qw]} has no rotation (norm {norm})")
    x, y, z, w = qx / norm, qy / norm, qz / norm, qw / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@dataclass(frozen=True)
class CameraPose:
    """The camera optical frame in `base_frame`: p_base = rotation @ p_optical + translation."""

    translation: tuple[float, float, float]
    rotation: tuple[tuple[float, float, float], ...]  # 3x3, rows

    @classmethod
    def from_extrinsics(cls, values: Sequence[float], name: str = "camera_extrinsics"
                        ) -> CameraPose:
        """`[x, y, z, qx, qy, qz, qw]` (static_transform_publisher's order) -> pose."""
        values = [float(v) for v in values]
        if len(values) != 7 or not all(math.isfinite(v) for v in values):
            raise ConfigurationError(f"{name} must be 7 finite numbers [x, y, z, qx, qy, qz, "
                                     f"qw], got {values}")
        rotation = rotation_from_quaternion(*values[3:])
        return cls(tuple(values[:3]), tuple(tuple(row) for row in rotation.tolist()))

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.rotation, np.float64)

    @property
    def origin(self) -> np.ndarray:
        return np.asarray(self.translation, np.float64)


@dataclass(frozen=True)
class CameraModel:
    """A camera_info's intrinsics: K (3x3 row-major), D and its model, the image size."""

    k: tuple[float, ...]
    d: tuple[float, ...]
    distortion_model: str
    size: tuple[int, int]  # height, width the calibration is for

    def __post_init__(self) -> None:
        if len(self.k) != 9 or not (self.k[0] > 0 and self.k[4] > 0):
            raise ConfigurationError(f"camera K must be 9 values with fx, fy > 0, got {self.k}")
        if self.distortion_model not in (*PINHOLE_MODELS, FISHEYE_MODEL):
            raise ConfigurationError(f"distortion model {self.distortion_model!r} is not "
                                     f"supported (known: plumb_bob, rational_polynomial, "
                                     f"{FISHEYE_MODEL})")
        if self.distortion_model == FISHEYE_MODEL and len(self.d) != 4:
            raise ConfigurationError(f"{FISHEYE_MODEL} needs 4 coefficients, got {len(self.d)}")
        if self.distortion_model != FISHEYE_MODEL and len(self.d) not in (0, 4, 5, 8, 12, 14):
            raise ConfigurationError(f"D has {len(self.d)} coefficients; OpenCV takes 4, 5, 8, "
                                     "12 or 14")
        if min(self.size) <= 0:
            raise ConfigurationError(f"camera size must be positive, got {self.size}")

    @classmethod
    def from_camera_info(cls, info) -> CameraModel:
        """From a sensor_msgs/CameraInfo (rclpy's or a bag's: fields k, d, distortion_model,
        height, width)."""
        return cls(tuple(float(v) for v in info.k), tuple(float(v) for v in info.d),
                   info.distortion_model, (int(info.height), int(info.width)))

    def resized(self, size: tuple[int, int]) -> CameraModel:
        """The same camera for an image of `size` (a calibration at another resolution)."""
        if tuple(size) == tuple(self.size):
            return self
        k, _ = scale_intrinsics(self.k, [*self.k[:3], 0.0, *self.k[3:6], 0.0, *self.k[6:],
                                         0.0], self.size, size)
        return CameraModel(tuple(k), self.d, self.distortion_model, tuple(size))

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.k, np.float64).reshape(3, 3)

    def _coefficients(self) -> np.ndarray:
        return np.asarray(self.d, np.float64) if any(self.d) else np.zeros(0)

    def undistort(self, pixels: np.ndarray) -> np.ndarray:
        """Nx2 pixel coordinates (OpenCV's: (0, 0) is the centre of the top-left pixel) ->
        Nx2 normalised coordinates (x / z, y / z) of their rays in the optical frame."""
        points = np.asarray(pixels, np.float64).reshape(-1, 1, 2)
        if not len(points):
            return np.zeros((0, 2))
        if self.distortion_model == FISHEYE_MODEL:
            normalised = cv2.fisheye.undistortPoints(points, self.matrix, self._coefficients())
        else:
            normalised = cv2.undistortPoints(points, self.matrix, self._coefficients())
        return normalised.reshape(-1, 2)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Nx3 optical-frame points (z > 0) -> Nx2 pixel coordinates, distorted."""
        points = np.asarray(points, np.float64).reshape(-1, 1, 3)
        if not len(points):
            return np.zeros((0, 2))
        zero = np.zeros(3)
        if self.distortion_model == FISHEYE_MODEL:
            pixels, _ = cv2.fisheye.projectPoints(points, zero, zero, self.matrix,
                                                  self._coefficients())
        else:
            pixels, _ = cv2.projectPoints(points, zero, zero, self.matrix, self._coefficients())
        return pixels.reshape(-1, 2)

    def field_of_view(self) -> tuple[float, float, float, float]:
        """Normalised (x_min, x_max, y_min, y_max) of the image border's rays: points outside
        are not imaged (a distortion polynomial far outside its fit can map them back in)."""
        height, width = self.size
        border = np.concatenate([
            np.stack([np.linspace(-0.5, width - 0.5, 33), np.full(33, -0.5)], 1),
            np.stack([np.linspace(-0.5, width - 0.5, 33), np.full(33, height - 0.5)], 1),
            np.stack([np.full(33, -0.5), np.linspace(-0.5, height - 0.5, 33)], 1),
            np.stack([np.full(33, width - 0.5), np.linspace(-0.5, height - 0.5, 33)], 1)])
        rays = self.undistort(border)
        return (float(rays[:, 0].min()), float(rays[:, 0].max()), float(rays[:, 1].min()),
                float(rays[:, 1].max()))


def ground_points(camera: CameraModel, pose: CameraPose, pixels: np.ndarray) -> np.ndarray:
    """Nx2 pixel coordinates -> Nx2 (x, y) where their rays meet z = 0 of base_frame; NaN
    for rays that never reach the ground ahead of the camera."""
    normalised = camera.undistort(pixels)
    rays = np.concatenate([normalised, np.ones((len(normalised), 1))], 1) @ pose.matrix.T
    origin = pose.origin
    hits = (rays[:, 2] < -MIN_DOWNWARD) & (origin[2] > 0)  # a camera above the ground
    reach = -origin[2] / np.where(hits, rays[:, 2], -1.0)
    points = origin[:2] + reach[:, None] * rays[:, :2]
    points[~hits] = np.nan
    return points


@dataclass(frozen=True)
class GroundObstacle:
    """Where one obstacle stands in base_frame (metres)."""

    distance: float  # x of its ground contact nearest the camera (ahead)
    lateral: float  # y of its front face's centre (left positive)
    width: float  # extent of its front face, across the camera's view
    contacts: tuple[tuple[float, float], ...]  # (x, y) per image column, left to right


def mask_contacts(mask: np.ndarray, bbox: tuple[int, int, int, int]) -> np.ndarray:
    """Nx2 pixel coordinates of the lower edge of the lowest mask pixel in each column of
    `bbox` (x, y, width, height) that has one, left to right."""
    x, y, width, height = bbox
    inside = mask[y:y + height, x:x + width] > 0
    columns = np.flatnonzero(inside.any(axis=0))
    lowest = height - 1 - np.argmax(inside[::-1, columns], axis=0)
    return np.stack([x + columns, y + lowest + 0.5], 1).astype(np.float64)


def locate(obstacle: Obstacle, mask: np.ndarray, camera: CameraModel, pose: CameraPose
           ) -> GroundObstacle | None:
    """The obstacle's ground position from the bottom of its mask; None when no contact
    reaches the ground (above the horizon)."""
    pixels = mask_contacts(mask, obstacle.bbox)
    if not len(pixels):
        return None
    points = ground_points(camera, pose, pixels)
    points = points[np.isfinite(points).all(1)]
    if not len(points):
        return None
    # Place and width on the obstacle's front face: the contacts pulled along their rays to
    # the nearest one's range from the camera, so a rounded bottom does not widen it.
    origin = pose.origin[:2]
    ranges = np.hypot(*(points - origin).T)
    nearest = int(np.argmin(ranges))
    face = origin + (points - origin) * (ranges[nearest] / np.maximum(ranges, 1e-9))[:, None]
    centre = (face[0] + face[-1]) / 2  # the leftmost and rightmost columns' contacts
    column = float(ranges[nearest]) / camera.k[0]  # one column's span at that range
    return GroundObstacle(distance=float(points[nearest, 0]), lateral=float(centre[1]),
                          width=float(np.hypot(*(face[0] - face[-1])) + column),
                          contacts=tuple(map(tuple, points.tolist())))


@dataclass(frozen=True)
class GridConfig:
    """The occupancy grid in base_frame: `length` metres ahead of its origin x = 0,
    `width` metres across centred on y = 0, square cells of `resolution` metres."""

    resolution: float = 0.2
    length: float = 50.0
    width: float = 20.0

    def __post_init__(self) -> None:
        for name in ("resolution", "length", "width"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigurationError(f"grid_{name} must be a positive number of metres, "
                                         f"got {value!r}")
        if self.length / self.resolution * self.width / self.resolution > 25_000_000:
            raise ConfigurationError("grid_length x grid_width holds over 25 million cells at "
                                     f"grid_resolution {self.resolution} m; use coarser cells")

    @property
    def shape(self) -> tuple[int, int]:
        """(rows along y, columns along x), as OccupancyGrid's height and width."""
        return (max(1, round(self.width / self.resolution)),
                max(1, round(self.length / self.resolution)))

    @property
    def origin(self) -> tuple[float, float]:
        """(x, y) of cell (0, 0)'s outer corner."""
        return 0.0, -self.shape[0] * self.resolution / 2

    def cell_centres(self) -> np.ndarray:
        """rows x cols x 2 (x, y) of every cell centre."""
        rows, cols = self.shape
        x0, y0 = self.origin
        xs = x0 + (np.arange(cols) + 0.5) * self.resolution
        ys = y0 + (np.arange(rows) + 0.5) * self.resolution
        return np.stack(np.meshgrid(xs, ys), -1)

    def cells(self, points: np.ndarray) -> np.ndarray:
        """Nx2 (x, y) -> Nx2 integer (row, col), unclipped."""
        x0, y0 = self.origin
        return np.floor((points[:, ::-1] - (y0, x0)) / self.resolution).astype(np.int64)


class GroundView:
    """One camera's view of the grid: which image pixel every cell centre falls on (or
    none), computed once for its calibration, pose and frame size."""

    def __init__(self, grid: GridConfig, camera: CameraModel, pose: CameraPose):
        self.grid, self.camera, self.pose = grid, camera, pose
        centres = grid.cell_centres().reshape(-1, 2)
        ground = np.concatenate([centres, np.zeros((len(centres), 1))], 1)
        optical = (ground - pose.origin) @ pose.matrix
        ahead = optical[:, 2] > 1e-3
        normalised = optical[:, :2] / np.where(ahead, optical[:, 2], 1.0)[:, None]
        x_min, x_max, y_min, y_max = camera.field_of_view()
        ahead &= ((normalised[:, 0] >= x_min) & (normalised[:, 0] <= x_max)
                  & (normalised[:, 1] >= y_min) & (normalised[:, 1] <= y_max))
        pixels = np.full((len(centres), 2), -1.0)
        pixels[ahead] = camera.project(optical[ahead])
        columns, rows = np.round(pixels[:, 0]), np.round(pixels[:, 1])
        height, width = camera.size
        inside = ahead & (columns >= 0) & (columns < width) & (rows >= 0) & (rows < height)
        self.pixel = np.where(inside, rows * width + columns, -1).astype(np.int64)
        self._seen = np.flatnonzero(inside)

    def layer(self, mask: np.ndarray, obstacles: Sequence[GroundObstacle]) -> np.ndarray:
        """int8 rows x cols: OCCUPIED under the obstacles' contacts, FREE where the camera
        sees ground outside `mask` (uint8 HxW, any obstacle blob), UNKNOWN elsewhere (out
        of view, or hidden behind a blob)."""
        if mask.shape != tuple(self.camera.size):
            raise ConfigurationError(f"mask {mask.shape} differs from the camera's size "
                                     f"{self.camera.size}")
        rows, cols = self.grid.shape
        layer = np.full(rows * cols, UNKNOWN, np.int8)
        hidden = mask.reshape(-1)[self.pixel[self._seen]] > 0
        layer[self._seen] = np.where(hidden, UNKNOWN, FREE)
        layer = layer.reshape(rows, cols)
        mark_contacts(layer, self.grid, obstacles)
        return layer


def mark_contacts(layer: np.ndarray, grid: GridConfig,
                  obstacles: Sequence[GroundObstacle]) -> None:
    """Set OCCUPIED along each obstacle's contacts (consecutive ones joined), in place."""
    rows, cols = grid.shape
    for obstacle in obstacles:
        cells = grid.cells(np.asarray(obstacle.contacts, np.float64).reshape(-1, 2))
        if not len(cells):
            continue
        if len(cells) == 1 or np.abs(cells).max() > 4 * max(rows, cols):
            inside = ((cells[:, 0] >= 0) & (cells[:, 0] < rows) & (cells[:, 1] >= 0)
                      & (cells[:, 1] < cols))
            layer[cells[inside, 0], cells[inside, 1]] = OCCUPIED
            continue
        canvas = np.zeros((rows, cols), np.uint8)
        cv2.polylines(canvas, [cells[:, ::-1].astype(np.int32).reshape(-1, 1, 2)], False, 1)
        layer[canvas > 0] = OCCUPIED


def fuse(layers: Sequence[np.ndarray]) -> np.ndarray:
    """Several cameras' layers -> one grid: occupied where any sees an obstacle, else free
    where any sees free ground, else unknown (OCCUPIED > FREE > UNKNOWN)."""
    if not layers:
        raise ConfigurationError("fuse needs at least one layer")
    return np.maximum.reduce([np.asarray(layer, np.int8) for layer in layers])
