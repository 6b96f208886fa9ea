"""A frame's obstacles as messages other nodes use: `vision_msgs/Detection2DArray` and a
`visualization_msgs/ImageMarker` of box outlines that Foxglove draws over the image.

Coordinates are image pixels with (0, 0) at the top-left corner of the top-left pixel (the
convention Foxglove draws image annotations in), so a box over pixel columns x..x+w-1 spans
x..x+w. The box arithmetic (`box_detections`, `outline_points`) is ROS-free. vision_msgs
has no PyPI wheel: `detection_array` fills the classes of whichever `vision_msgs.msg` module
it is given, and the node passes the real one only where a ROS distribution installs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import ImageMarker

from ood_perception.core.postprocess import Obstacle

# The class every obstacle is reported as: the model says "not a known class", nothing more.
OBSTACLE_CLASS = "anomaly"
MARKER_NAMESPACE = "ood_perception/obstacles"
OUTLINE_WIDTH_PX = 2.0
OUTLINE_COLOUR = ColorRGBA(r=1.0, g=0.0, b=0.0, a=1.0)


@dataclass(frozen=True)
class BoxDetection:
    """One obstacle's box in Detection2D terms (pixels, corner-origin)."""

    id: str  # the obstacle's rank in its frame, "1" = largest
    center: tuple[float, float]  # x, y
    size: tuple[float, float]  # width, height
    score: float  # the highest anomaly score inside the obstacle


def box_detections(obstacles: Sequence[Obstacle]) -> list[BoxDetection]:
    """Obstacles -> boxes, in the obstacles' order (largest first)."""
    return [BoxDetection(id=str(o.id), center=(o.bbox[0] + o.bbox[2] / 2.0,
                                               o.bbox[1] + o.bbox[3] / 2.0),
                         size=(float(o.bbox[2]), float(o.bbox[3])), score=o.score_max)
            for o in obstacles]


def outline_points(obstacles: Sequence[Obstacle]) -> list[tuple[float, float]]:
    """Each box's four edges as point pairs (a LINE_LIST): 8 points per obstacle."""
    points = []
    for obstacle in obstacles:
        x, y, width, height = obstacle.bbox
        corners = [(x, y), (x + width, y), (x + width, y + height), (x, y + height)]
        for index, corner in enumerate(corners):
            points += [corner, corners[(index + 1) % 4]]
    return [(float(px), float(py)) for px, py in points]


def detection_array(header: Header, obstacles: Sequence[Obstacle], vision_msgs: ModuleType):
    """A `vision_msgs/Detection2DArray` (vision_msgs 4.x, Humble and Jazzy) of `obstacles`,
    built from the message classes of `vision_msgs` (the `vision_msgs.msg` module)."""
    detections = []
    for box in box_detections(obstacles):
        hypothesis = vision_msgs.ObjectHypothesisWithPose(
            hypothesis=vision_msgs.ObjectHypothesis(class_id=OBSTACLE_CLASS, score=box.score))
        center = vision_msgs.Pose2D(position=vision_msgs.Point2D(x=box.center[0],
                                                                 y=box.center[1]), theta=0.0)
        detections.append(vision_msgs.Detection2D(
            header=header, results=[hypothesis], id=box.id,
            bbox=vision_msgs.BoundingBox2D(center=center, size_x=box.size[0],
                                           size_y=box.size[1])))
    return vision_msgs.Detection2DArray(header=header, detections=detections)


def outline_marker(header: Header, obstacles: Sequence[Obstacle]) -> ImageMarker:
    """One LINE_LIST marker of every box outline; an empty one clears the last frame's."""
    return ImageMarker(
        header=header, ns=MARKER_NAMESPACE, id=0, type=ImageMarker.LINE_LIST,
        action=ImageMarker.ADD, scale=OUTLINE_WIDTH_PX, outline_color=OUTLINE_COLOUR,
        points=[Point(x=x, y=y, z=0.0) for x, y in outline_points(obstacles)])
