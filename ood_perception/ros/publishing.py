"""Per-camera output publishers and what one answered frame publishes on them.

A frame publishes only the outputs that are switched on and subscribed to, asked once per
frame (`wanted_outputs`), and the pipeline computes only what those need (`pipeline_outputs`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from visualization_msgs.msg import ImageMarker

from ood_perception.contract import IMAGE_OUTPUTS
from ood_perception.core.pipeline import FrameResult, Outputs
from ood_perception.core.stats import RunningStats, SequenceGaps
from ood_perception.ros.ground_outputs import GroundOutputs
from ood_perception.ros.messages import camera_info_for, image_message
from ood_perception.ros.obstacle_messages import detection_array, outline_markers
from ood_perception.ros.parameters import NodeConfig
from ood_perception.ros.qos import OUTPUT_QOS, QOS_OVERRIDES

try:  # a rosdep key on Humble and Jazzy, but no PyPI wheel: optional here
    from vision_msgs import msg as vision_msgs
except ImportError:
    vision_msgs = None

OUTPUT_TYPES = {"camera_info": CameraInfo, "obstacle_markers": ImageMarker}
DETECTIONS = "detections"
# With score_resolution "model": the calibration of the score image, scaled to its size.
SCORE_CAMERA_INFO = "score_camera_info"
# With refine "s2m": the S2M map (32FC1 in [0, 1]).
S2M_SCORE = "s2m_score"


@dataclass
class Camera:
    """One camera's topics, counters and newest calibration."""

    index: int
    name: str
    topic: str
    stats: RunningStats
    gaps: SequenceGaps = field(default_factory=SequenceGaps)
    publishers: dict = field(default_factory=dict)
    subscription: Any = None
    info_subscription: Any = None
    camera_info: CameraInfo | None = None
    # Drops by reason at the last diagnostics report.
    reported_drops: dict[str, int] = field(default_factory=dict)
    # Obstacle ids outlined in the last obstacle_markers (removed by id once gone).
    outlined: set[int] = field(default_factory=set)


class Publishers:
    """Creates and destroys the node's publishers, managed ones on a lifecycle node."""

    def __init__(self, node: Node, lifecycle: bool):
        self.node = node
        self.lifecycle = lifecycle

    def create(self, message_type, topic: str, qos, overridable: bool = True):
        create = (self.node.create_lifecycle_publisher if self.lifecycle
                  else self.node.create_publisher)
        options = {"qos_overriding_options": QOS_OVERRIDES} if overridable else {}
        return create(message_type, topic, qos, **options)

    def destroy(self, publisher) -> None:
        if self.lifecycle:
            self.node.destroy_lifecycle_publisher(publisher)
        else:
            self.node.destroy_publisher(publisher)

    def for_camera(self, config: NodeConfig, camera: int) -> dict:
        """Output name -> publisher of camera `camera`."""
        publishers = {output: self.create(Image, config.output_topic(camera, output),
                                          OUTPUT_QOS) for output in IMAGE_OUTPUTS}
        for output, message_type in OUTPUT_TYPES.items():
            publishers[output] = self.create(
                message_type, config.output_topic(camera, output), OUTPUT_QOS)
        publishers[SCORE_CAMERA_INFO] = self.create(
            CameraInfo, config.output_topic(camera, SCORE_CAMERA_INFO), OUTPUT_QOS)
        if config.refine is not None:
            publishers[S2M_SCORE] = self.create(
                Image, config.output_topic(camera, S2M_SCORE), OUTPUT_QOS)
        if vision_msgs is not None:
            publishers[DETECTIONS] = self.create(
                vision_msgs.Detection2DArray, config.output_topic(camera, DETECTIONS),
                OUTPUT_QOS)
        return publishers


def wanted_outputs(camera: Camera, config: NodeConfig) -> frozenset[str]:
    """The outputs this frame publishes: switched on and subscribed to, asked once per
    frame (a subscriber that comes or goes counts from the next frame)."""
    return frozenset(output for output, publisher in camera.publishers.items()
                     if config.publish.get(output, True) and _subscribed(publisher))


def pipeline_outputs(wanted: frozenset[str], config: NodeConfig,
                     ground: GroundOutputs | None = None) -> Outputs:
    """What the pipeline computes for `wanted` (and the grid or 3-D markers of `ground`,
    when subscribed): nothing that nobody reads."""
    return Outputs(
        score=config.score_resolution if "anomaly_score" in wanted else None,
        semantic="semantic" in wanted,
        obstacles=bool(wanted & {"obstacle_mask", "obstacle_markers", DETECTIONS}) or (
            ground is not None and ground.wanted()),
        overlay="overlay" in wanted, s2m=S2M_SCORE in wanted)


def publish_result(camera: Camera, header: Header, result: FrameResult,
                   wanted: frozenset[str], config: NodeConfig,
                   ground: GroundOutputs | None = None) -> dict[str, float]:
    """Build and publish what `result` holds for the `wanted` outputs, its obstacles tracked
    and placed on the ground first by `ground` (which publishes the grid and 3-D markers);
    returns the ms spent building the messages ("message_build") and handing them to DDS
    ("publish")."""
    start = time.perf_counter()
    placed = None
    if ground is not None:
        placed = ground.process(camera.index, header, camera.camera_info, result)
        result = placed.result
    messages = []
    if result.anomaly_score is not None:
        messages.append(("anomaly_score", image_message(header, result.anomaly_score, "32FC1")))
    if result.semantic is not None:
        messages.append(("semantic", image_message(header, result.semantic, "mono8")))
    if result.overlay is not None:
        messages.append(("overlay", image_message(header, result.overlay, "bgr8")))
    if result.s2m_score is not None:
        messages.append((S2M_SCORE, image_message(header, result.s2m_score, "32FC1")))
    if result.mask is not None:
        if "obstacle_mask" in wanted:
            messages.append(("obstacle_mask", image_message(header, result.mask, "mono8")))
        if "obstacle_markers" in wanted:
            ids = {obstacle.id for obstacle in result.obstacles}
            messages += [("obstacle_markers", marker) for marker in outline_markers(
                header, result.obstacles, camera.outlined - ids)]
            camera.outlined = ids
        if DETECTIONS in wanted:
            messages.append((DETECTIONS, detection_array(header, result.obstacles, vision_msgs,
                                                         placed and placed.ground)))
    info = camera.camera_info
    if info is not None:
        if "camera_info" in wanted:
            messages.append(("camera_info", camera_info_for(header, info)))
        score = result.anomaly_score
        if config.score_resolution == "model" and score is not None \
                and SCORE_CAMERA_INFO in wanted:
            messages.append((SCORE_CAMERA_INFO, camera_info_for(header, info, score.shape[:2])))
    built = time.perf_counter()
    for output, message in messages:
        camera.publishers[output].publish(message)
    return {"message_build": (built - start) * 1000.0,
            "publish": (time.perf_counter() - built) * 1000.0}


def _subscribed(publisher) -> bool:
    """Whether anyone subscribes to `publisher` now (a cheap count from the middleware)."""
    return publisher is not None and publisher.get_subscription_count() > 0
