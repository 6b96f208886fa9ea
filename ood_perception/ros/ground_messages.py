"""Obstacles on the ground as messages planners and RViz read: a `nav_msgs/OccupancyGrid` and
a `visualization_msgs/MarkerArray` of boxes, both in `base_frame`.

The grid's data is row-major from cell (0, 0) at `info.origin` (rows along y, columns along
x), as nav_msgs defines it. Each obstacle is one CUBE marker whose id is its track id, in a
namespace per camera; markers of tracks that ended are deleted by id, so several cameras
can share the topic (a DELETEALL would clear the other cameras' markers too).
"""

from __future__ import annotations

import array
from collections.abc import Iterable, Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from nav_msgs.msg import MapMetaData, OccupancyGrid
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from ood_perception.core.ground import GridConfig
from ood_perception.core.tracking import Track

MARKER_NAMESPACE = "ood_perception/obstacles"
# A camera sees an obstacle's front, not its depth or height: drawn this deep and tall.
MARKER_DEPTH_M = 0.5
MARKER_HEIGHT_M = 1.0
CONFIRMED_COLOUR = ColorRGBA(r=1.0, g=0.1, b=0.1, a=0.8)
TENTATIVE_COLOUR = ColorRGBA(r=1.0, g=0.8, b=0.1, a=0.5)


def occupancy_grid(header: Header, grid: GridConfig, cells: np.ndarray) -> OccupancyGrid:
    """int8 rows x cols (100 / 0 / -1) -> OccupancyGrid with `header` (stamp, base_frame)."""
    rows, cols = grid.shape
    x0, y0 = grid.origin
    info = MapMetaData(map_load_time=header.stamp, resolution=float(grid.resolution),
                       width=cols, height=rows,
                       origin=Pose(position=Point(x=float(x0), y=float(y0), z=0.0),
                                   orientation=Quaternion(w=1.0)))
    message = OccupancyGrid(header=header, info=info)
    message.data = array.array("b", np.ascontiguousarray(cells, np.int8).tobytes())
    return message


def camera_namespace(camera: str) -> str:
    return f"{MARKER_NAMESPACE}/{camera}"


def position_markers(header: Header, camera: str, tracks: Sequence[Track],
                     ended: Iterable[int]) -> MarkerArray:
    """A CUBE per track on the ground (id = track id; red when confirmed), and a DELETE for
    each id in `ended`."""
    namespace = camera_namespace(camera)
    markers = [Marker(header=header, ns=namespace, id=int(track_id), action=Marker.DELETE)
               for track_id in sorted(ended)]
    for track in tracks:
        if track.ground is None:
            continue
        ground = track.ground
        markers.append(Marker(
            header=header, ns=namespace, id=int(track.id), type=Marker.CUBE,
            action=Marker.ADD, lifetime=Duration(),
            pose=Pose(position=Point(x=ground.distance + MARKER_DEPTH_M / 2, y=ground.lateral,
                                     z=MARKER_HEIGHT_M / 2), orientation=Quaternion(w=1.0)),
            scale=Vector3(x=MARKER_DEPTH_M, y=max(ground.width, 0.05), z=MARKER_HEIGHT_M),
            color=CONFIRMED_COLOUR if track.confirmed else TENTATIVE_COLOUR))
    return MarkerArray(markers=markers)
