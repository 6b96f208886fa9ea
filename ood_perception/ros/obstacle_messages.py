"""A frame's obstacles as messages other nodes use: `vision_msgs/Detection2DArray` and
`visualization_msgs/ImageMarker` box outlines that Foxglove draws over the image.

An obstacle's id is its track id when the node tracks (stable across frames): it is the
Detection2D's `id` and its outline marker's `id`; the outline of a track that ended is
removed by id. Where the obstacle's ground position is known, its detection's hypothesis
pose holds it (metres in `base_frame`, the frame of the node's grid and 3-D markers).

Coordinates are image pixels with (0, 0) at the top-left corner of the top-left pixel (the
convention Foxglove draws image annotations in), so a box over pixel columns x..x+w-1 spans
x..x+w. The box arithmetic (`box_detections`, `outline_points`) is ROS-free. vision_msgs
has no PyPI wheel: `detection_array` fills the classes of whichever `vision_msgs.msg` module
it is given, and the node passes the real one only where a ROS distribution installs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import ImageMarker

from ood_perception.core.ground import GroundObstacle
from ood_perception.core.postprocess import Obstacle

# The class every obstacle is reported as: the model says "not a known class", nothing more.
OBSTACLE_CLASS = "anomaly"
MARKER_NAMESPACE = "ood_perception/obstacles"
OUTLINE_WIDTH_PX = 2.0
OUTLINE_COLOUR = ColorRGBA(r=1.0, g=0.0, b=0.0, a=1.0)


@dataclass(frozen=True)
class BoxDetection:
    """One obstacle's box in Detection2D terms (pixels, corner-origin)."""

    id: str  # the obstacle's track id (or its rank in the frame, "1" = largest, untracked)
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


def detection_array(header: Header, obstacles: Sequence[Obstacle], vision_msgs: ModuleType,
                    ground: Sequence[GroundObstacle | None] | None = None):
    """A `vision_msgs/Detection2DArray` (vision_msgs 4.x, Humble and Jazzy) of `obstacles`,
    built from the message classes of `vision_msgs` (the `vision_msgs.msg` module); `ground`
    (one per obstacle) fills each hypothesis pose where known."""
    detections = []
    for index, box in enumerate(box_detections(obstacles)):
        hypothesis = vision_msgs.ObjectHypothesisWithPose(
            hypothesis=vision_msgs.ObjectHypothesis(class_id=OBSTACLE_CLASS, score=box.score))
        place = ground[index] if ground is not None else None
        if place is not None:
            hypothesis.pose.pose.position = Point(x=place.distance, y=place.lateral, z=0.0)
        center = vision_msgs.Pose2D(position=vision_msgs.Point2D(x=box.center[0],
                                                                 y=box.center[1]), theta=0.0)
        detections.append(vision_msgs.Detection2D(
            header=header, results=[hypothesis], id=box.id,
            bbox=vision_msgs.BoundingBox2D(center=center, size_x=box.size[0],
                                           size_y=box.size[1])))
    return vision_msgs.Detection2DArray(header=header, detections=detections)


def outline_markers(header: Header, obstacles: Sequence[Obstacle],
                    ended: Iterable[int] = ()) -> list[ImageMarker]:
    """One LINE_LIST marker per obstacle (id = the obstacle's id), then a REMOVE for each
    id in `ended` (outlines drawn before whose obstacle is gone)."""
    markers = [ImageMarker(
        header=header, ns=MARKER_NAMESPACE, id=int(obstacle.id), type=ImageMarker.LINE_LIST,
        action=ImageMarker.ADD, scale=OUTLINE_WIDTH_PX, outline_color=OUTLINE_COLOUR,
        points=[Point(x=x, y=y, z=0.0) for x, y in outline_points([obstacle])])
        for obstacle in obstacles]
    return markers + [ImageMarker(header=header, ns=MARKER_NAMESPACE, id=int(obstacle_id),
                                  action=ImageMarker.REMOVE) for obstacle_id in sorted(ended)]
