"""Obstacles -> Detection2DArray and ImageMarker outlines (boxes in corner-origin pixels, ids
kept), and the ground position in each detection's hypothesis pose."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseWithCovariance
from std_msgs.msg import Header
from visualization_msgs.msg import ImageMarker

from ood_perception.core.ground import GroundObstacle
from ood_perception.core.postprocess import Obstacle
from ood_perception.ros.obstacle_messages import (
    OBSTACLE_CLASS,
    box_detections,
    detection_array,
    outline_markers,
    outline_points,
)

HEADER = Header(stamp=Time(sec=3, nanosec=7), frame_id="front")
OBSTACLES = [Obstacle(id=7, area=300, score_max=0.97, score_mean=0.8, bbox=(30, 20, 16, 12),
                      centroid=(37.5, 25.5)),
             Obstacle(id=2, area=9, score_max=0.6, score_mean=0.55, bbox=(0, 0, 3, 3),
                      centroid=(1.0, 1.0))]


def _vision_msgs_standin() -> SimpleNamespace:
    """vision_msgs 4.x (Humble, Jazzy) message classes with their fields, from the package's
    msg/*.msg files: vision_msgs has no PyPI wheel, so the real module cannot load here."""
    @dataclass
    class Point2D:
        x: float = 0.0
        y: float = 0.0

    @dataclass
    class Pose2D:
        position: Point2D = field(default_factory=Point2D)
        theta: float = 0.0

    @dataclass
    class BoundingBox2D:
        center: Pose2D = field(default_factory=Pose2D)
        size_x: float = 0.0
        size_y: float = 0.0

    @dataclass
    class ObjectHypothesis:
        class_id: str = ""
        score: float = 0.0

    @dataclass
    class ObjectHypothesisWithPose:
        hypothesis: ObjectHypothesis = field(default_factory=ObjectHypothesis)
        pose: PoseWithCovariance = field(default_factory=PoseWithCovariance)

    @dataclass
    class Detection2D:
        header: Header = None
        results: list = field(default_factory=list)
        bbox: BoundingBox2D = field(default_factory=BoundingBox2D)
        id: str = ""

    @dataclass
    class Detection2DArray:
        header: Header = None
        detections: list = field(default_factory=list)

    return SimpleNamespace(**{cls.__name__: cls for cls in (
        Point2D, Pose2D, BoundingBox2D, ObjectHypothesis, ObjectHypothesisWithPose,
        Detection2D, Detection2DArray)})


def test_boxes_are_centred_on_the_covered_pixels():
    first, second = box_detections(OBSTACLES)
    assert (first.id, first.center, first.size, first.score) == ("7", (38.0, 26.0),
                                                                 (16.0, 12.0), 0.97)
    assert second.center == (1.5, 1.5) and second.size == (3.0, 3.0)


def test_outline_points_close_each_box():
    points = outline_points(OBSTACLES[:1])
    assert len(points) == 8
    assert points[:2] == [(30.0, 20.0), (46.0, 20.0)] and points[-1] == (30.0, 20.0)
    assert {p for p in points} == {(30.0, 20.0), (46.0, 20.0), (46.0, 32.0), (30.0, 32.0)}


def test_detection_array_fills_vision_msgs_fields():
    ground = [GroundObstacle(distance=12.5, lateral=-0.75, width=0.9, contacts=((12.5, -0.75),)),
              None]
    array = detection_array(HEADER, OBSTACLES, _vision_msgs_standin(), ground)
    assert array.header == HEADER and len(array.detections) == 2
    detection = array.detections[0]
    assert detection.header == HEADER and detection.id == "7"
    position = detection.results[0].pose.pose.position
    assert (position.x, position.y, position.z) == (12.5, -0.75, 0.0)
    unplaced = array.detections[1].results[0].pose.pose.position
    assert (unplaced.x, unplaced.y) == (0.0, 0.0)
    assert (detection.bbox.center.position.x, detection.bbox.center.position.y) == (38.0, 26.0)
    assert (detection.bbox.size_x, detection.bbox.size_y) == (16.0, 12.0)
    hypothesis = detection.results[0].hypothesis
    assert (hypothesis.class_id, hypothesis.score) == (OBSTACLE_CLASS, 0.97)


def test_outline_markers_one_per_obstacle_by_id_and_ended_ids_removed():
    markers = outline_markers(HEADER, OBSTACLES, ended={3})
    assert [(m.id, m.action) for m in markers] == [(7, ImageMarker.ADD), (2, ImageMarker.ADD),
                                                   (3, ImageMarker.REMOVE)]
    first = markers[0]
    assert first.type == ImageMarker.LINE_LIST and first.header == HEADER and first.scale > 0
    assert [(p.x, p.y) for p in first.points] == outline_points(OBSTACLES[:1])
    assert first.outline_color.r == 1.0 and first.outline_color.a == 1.0
    assert markers[2].points == [] and outline_markers(HEADER, []) == []
