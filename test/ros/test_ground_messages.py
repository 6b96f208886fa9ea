"""The grid and the 3-D markers as nav_msgs and visualization_msgs messages."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from ood_perception.core.ground import GridConfig, GroundObstacle
from ood_perception.core.postprocess import Obstacle
from ood_perception.core.tracking import Track
from ood_perception.ros.ground_messages import (
    camera_namespace,
    occupancy_grid,
    position_markers,
)

HEADER = Header(stamp=Time(sec=5, nanosec=1), frame_id="base_link")
OBSTACLE = Obstacle(id=1, area=400, score_max=1.0, score_mean=1.0, bbox=(0, 0, 20, 20),
                    centroid=(10.0, 10.0))


def test_the_grid_is_row_major_from_its_origin_corner():
    grid = GridConfig(resolution=0.5, length=3.0, width=2.0)
    cells = np.full(grid.shape, -1, np.int8)
    cells[0, 5] = 100  # row 0 = the rightmost strip (y = -1..-0.5), column 5 = x 2.5..3
    cells[3, 0] = 0
    message = occupancy_grid(HEADER, grid, cells)
    info = message.info
    assert (info.width, info.height, info.resolution) == (6, 4, 0.5)
    assert (info.origin.position.x, info.origin.position.y) == (0.0, -1.0)
    assert info.origin.orientation.w == 1.0 and info.map_load_time == HEADER.stamp
    assert message.header == HEADER
    data = np.asarray(message.data, np.int8)
    assert len(data) == 24 and data[5] == 100 and data[18] == 0 and (data == -1).sum() == 22


def test_each_tracked_obstacle_is_a_box_by_id_and_ended_ids_are_deleted():
    placed = Track(id=4, obstacle=OBSTACLE, ground=GroundObstacle(10.0, -0.5, 0.8, ()),
                   confirmed=True, misses=0)
    unplaced = Track(id=5, obstacle=OBSTACLE, ground=None, confirmed=False, misses=0)
    markers = position_markers(HEADER, "front", [placed, unplaced], ended={2}).markers
    assert [(m.id, m.action) for m in markers] == [(2, Marker.DELETE), (4, Marker.ADD)]
    box = markers[1]
    assert box.ns == camera_namespace("front") and box.type == Marker.CUBE
    assert box.header == HEADER
    assert box.pose.position.x - box.scale.x / 2 == pytest.approx(10.0)  # the front face
    assert (box.pose.position.y, box.scale.y) == (-0.5, pytest.approx(0.8))
