"""Ground projection without ROS: poses, undistortion, contacts, the grid and its fusion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ood_perception.core.ground import (
    FREE,
    OCCUPIED,
    UNKNOWN,
    CameraModel,
    CameraPose,
    GridConfig,
    GroundObstacle,
    GroundView,
    fuse,
    ground_points,
    locate,
    mask_contacts,
)
from ood_perception.core.postprocess import Obstacle
from ood_perception.errors import ConfigurationError

# A 640x480 camera 1.5 m above base_link looking along x (REP 103 optical frame).
LEVEL = [0.0, 0.0, 1.5, -0.5, 0.5, -0.5, 0.5]
K = (500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0)
CAMERA = CameraModel(K, (), "plumb_bob", (480, 640))
POSE = CameraPose.from_extrinsics(LEVEL)


def _box_obstacle(mask: np.ndarray) -> Obstacle:
    x, y, w, h = cv2.boundingRect(mask)
    return Obstacle(id=1, area=int((mask > 0).sum()), score_max=1.0, score_mean=1.0,
                    bbox=(x, y, w, h), centroid=(x + w / 2, y + h / 2))


def test_the_level_camera_looks_along_x_with_y_left_and_z_up():
    rotation = POSE.matrix
    np.testing.assert_allclose(rotation @ [0, 0, 1], [1, 0, 0], atol=1e-12)  # optical z
    np.testing.assert_allclose(rotation @ [1, 0, 0], [0, -1, 0], atol=1e-12)  # x right
    np.testing.assert_allclose(rotation @ [0, 1, 0], [0, 0, -1], atol=1e-12)  # y down


def test_pixels_below_the_horizon_meet_the_ground_where_pinhole_geometry_says():
    points = ground_points(CAMERA, POSE, np.array([[320.0, 315.0], [420.0, 315.0],
                                                   [320.0, 240.0], [320.0, 100.0]]))
    np.testing.assert_allclose(points[0], [10.0, 0.0], atol=1e-9)  # 1.5 * 500 / 75
    np.testing.assert_allclose(points[1], [10.0, -2.0], atol=1e-9)  # 100 px right = 2 m
    assert np.isnan(points[2:]).all()  # the horizon and the sky never reach the ground


def test_a_pitched_and_shifted_camera_uses_its_whole_pose():
    # Pitched down 10 degrees, 2 m forward, 0.5 m left of base_link.
    pitch = np.radians(10.0)
    down = np.array([[np.cos(pitch), 0, np.sin(pitch)], [0, 1, 0],
                     [-np.sin(pitch), 0, np.cos(pitch)]])
    rotation = down @ POSE.matrix
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(rotation).as_quat()  # x y z w
    pose = CameraPose.from_extrinsics([2.0, 0.5, 1.5, *q])
    (point,) = ground_points(CAMERA, pose, np.array([[320.0, 240.0]]))
    # The optical axis meets the ground 1.5 / tan(10 deg) ahead of the camera.
    np.testing.assert_allclose(point, [2.0 + 1.5 / np.tan(pitch), 0.5], atol=1e-9)


def test_distortion_is_undone_before_the_intersection():
    distorted = CameraModel(K, (-0.3, 0.1, 0.0, 0.0, 0.0), "plumb_bob", (480, 640))
    ground = np.array([[10.0, -2.0, 0.0], [6.0, 1.0, 0.0]])
    optical = (ground - POSE.origin) @ POSE.matrix
    pixels = distorted.project(optical)
    assert np.abs(pixels - CAMERA.project(optical)).max() > 2  # the lens moves them
    np.testing.assert_allclose(ground_points(distorted, POSE, pixels), ground[:, :2],
                               atol=1e-3)


def test_fisheye_calibrations_round_trip_too():
    fisheye = CameraModel(K, (0.05, -0.01, 0.0, 0.0), "equidistant", (480, 640))
    optical = (np.array([[8.0, 1.0, 0.0]]) - POSE.origin) @ POSE.matrix
    np.testing.assert_allclose(ground_points(fisheye, POSE, fisheye.project(optical)),
                               [[8.0, 1.0]], atol=1e-4)


def test_a_calibration_for_another_size_is_scaled_to_the_frame():
    half = CAMERA.resized((240, 320))
    assert half.size == (240, 320)
    (point,) = ground_points(half, POSE, np.array([[159.75, 157.25]]))  # (320, 315) halved
    np.testing.assert_allclose(point, [10.0, 0.0], atol=1e-6)


def test_contacts_are_the_lower_edge_of_each_columns_lowest_pixel():
    mask = np.zeros((480, 640), np.uint8)
    mask[275:316, 300:340] = 255
    mask[316:320, 330:335] = 255  # a lower foot in five columns
    contacts = mask_contacts(mask, (300, 275, 40, 45))
    assert len(contacts) == 40
    assert contacts[0].tolist() == [300.0, 315.5] and contacts[32].tolist() == [332.0, 319.5]


def test_locate_reports_distance_lateral_and_width_on_the_front_face():
    mask = np.zeros((480, 640), np.uint8)
    mask[275:316, 300:340] = 255  # 40 px wide, bottom row 315
    found = locate(_box_obstacle(mask), mask, CAMERA, POSE)
    assert found.distance == pytest.approx(750 / 75.5)  # the bottom row's lower edge
    assert found.lateral == pytest.approx(0.5 / 500 * found.distance, abs=1e-4)  # 319.5 + 0.5
    assert found.width == pytest.approx(40 / 500 * found.distance, rel=1e-3)
    # A round bottom (higher at the sides) keeps the width of the front face.
    round_mask = np.zeros_like(mask)
    cv2.ellipse(round_mask, (320, 295), (20, 20), 0, 0, 360, 255, -1)
    rounded = locate(_box_obstacle(round_mask), round_mask, CAMERA, POSE)
    assert rounded.width == pytest.approx(41 / 500 * rounded.distance, rel=0.05)
    sky = np.zeros_like(mask)
    sky[100:150, 300:340] = 255
    assert locate(_box_obstacle(sky), sky, CAMERA, POSE) is None


def test_the_grid_is_occupied_at_the_contact_free_in_front_unknown_behind_and_outside():
    grid = GridConfig(resolution=0.2, length=30.0, width=20.0)
    assert grid.shape == (100, 150) and grid.origin == (0.0, -10.0)
    view = GroundView(grid, CAMERA, POSE)
    mask = np.zeros((480, 640), np.uint8)
    mask[275:316, 300:340] = 255
    layer = view.layer(mask, [locate(_box_obstacle(mask), mask, CAMERA, POSE)])
    centres = grid.cell_centres()

    def at(x: float, y: float) -> int:
        row, col = grid.cells(np.array([[x, y]]))[0]
        return int(layer[row, col])

    occupied = centres[layer == OCCUPIED]
    assert len(occupied) and np.hypot(occupied[:, 0] - 10.0, occupied[:, 1]).max() < 0.6
    assert at(9.9, 0.0) == OCCUPIED and at(5.0, 0.0) == FREE and at(9.0, 3.0) == FREE
    assert at(15.0, 0.0) == UNKNOWN  # behind the obstacle
    assert at(10.0, 9.0) == UNKNOWN  # outside the 64 degree view
    assert at(2.0, 0.0) == UNKNOWN  # under the image's bottom edge (5 m ahead and nearer)
    assert at(5.5, 0.0) == FREE


def test_layers_fuse_occupied_over_free_over_unknown():
    a = np.array([[UNKNOWN, FREE, OCCUPIED, UNKNOWN]], np.int8)
    b = np.array([[FREE, UNKNOWN, FREE, UNKNOWN]], np.int8)
    assert fuse([a, b]).tolist() == [[FREE, FREE, OCCUPIED, UNKNOWN]]
    with pytest.raises(ConfigurationError):
        fuse([])


def test_contacts_far_outside_the_grid_are_clipped():
    grid = GridConfig(resolution=1.0, length=10.0, width=10.0)
    layer = np.full(grid.shape, UNKNOWN, np.int8)
    from ood_perception.core.ground import mark_contacts

    mark_contacts(layer, grid, [GroundObstacle(5.0, 0.0, 1.0, ((5.2, -0.5), (5.2, 0.5))),
                                GroundObstacle(1e6, 0.0, 1.0, ((1e6, 0.0), (1e6, 1.0)))])
    assert (layer == OCCUPIED).sum() == 2 and layer[4:6, 5].tolist() == [OCCUPIED, OCCUPIED]


@pytest.mark.parametrize("values, message", [
    ([0, 0, 1.5, 0, 0, 0], "7 finite numbers"),
    ([0, 0, 1.5, 0, 0, 0, 0], "no rotation"),
    ([0, 0, float("nan"), 0, 0, 0, 1], "7 finite numbers"),
])
def test_bad_extrinsics_say_what_to_fix(values, message):
    with pytest.raises(ConfigurationError, match=message):
        CameraPose.from_extrinsics(values)


@pytest.mark.parametrize("kwargs, message", [
    ({"k": (0.0,) * 9}, "fx, fy > 0"), ({"distortion_model": "kannala"}, "not supported"),
    ({"d": (0.1, 0.2, 0.3)}, "coefficients"),
    ({"distortion_model": "equidistant", "d": (0.1,) * 5}, "4 coefficients"),
])
def test_bad_calibrations_say_what_to_fix(kwargs, message):
    values = {"k": K, "d": (), "distortion_model": "plumb_bob", "size": (480, 640)} | kwargs
    with pytest.raises(ConfigurationError, match=message):
        CameraModel(**values)


@pytest.mark.parametrize("kwargs", [{"resolution": 0.0}, {"length": -1.0},
                                    {"width": float("inf")}, {"resolution": 0.001}])
def test_bad_grids_are_refused(kwargs):
    with pytest.raises(ConfigurationError, match="grid_"):
        GridConfig(**kwargs)
