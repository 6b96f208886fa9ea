"""Per-camera output publishers and what one answered frame publishes on them.

A frame publishes only the outputs that are switched on and subscribed to, asked once per
frame (`wanted_outputs`), and the pipeline computes only what those need (`pipeline_outputs`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from visualization_msgs.msg import ImageMarker

from ood_perception.contract import IMAGE_OUTPUTS
from ood_perception.core.ground import GroundObstacle
from ood_perception.core.pipeline import FrameResult, Outputs
from ood_perception.core.stats import RunningStats, SequenceGaps
from ood_perception.ros.ground_outputs import GRID, POSITIONS, GroundOutputs
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
# Relative aspect-ratio difference below which a resize to the model input is no stretch.
ASPECT_TOLERANCE = 0.01


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
    # Set at the first frame when its aspect ratio differs from the model input's.
    resize_note: str | None = None
    frame_seen: bool = False

    def first_frame(self, frame_size: tuple[int, int], model_size: tuple[int, int]) -> bool:
        """Note the first frame's stretch to the model input; True only then, if stretched."""
        if self.frame_seen:
            return False
        self.frame_seen = True
        self.resize_note = resize_note(frame_size, model_size)
        return self.resize_note is not None
    # Drops by reason at the last diagnostics report.
    reported_drops: dict[str, int] = field(default_factory=dict)
    # The node's obstacles on the ground (tracking, grid, 3-D markers), shared by cameras.
    ground: GroundOutputs | None = None
    # Obstacle ids outlined in the last obstacle_markers (removed by id once gone).
    outlined: set[int] = field(default_factory=set)


class Publishers:
    """Creates and destroys the node's publishers, managed ones on a lifecycle node."""

    def __init__(self, node: Node, lifecycle: bool):
        self.node = node
        self.lifecycle = lifecycle
        self.ground = GroundOutputs(node, self)

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

    def for_camera(self, config: NodeConfig, camera: Camera) -> dict:
        """Output name -> publisher of `camera`; the first camera's also holds the node's
        ground outputs (`~/obstacle_grid`, `~/obstacle_positions`), opened then, which every
        camera shares (`camera.ground`)."""
        publishers = {output: self.create(message_type, config.output_topic(camera.index, output),
                                          OUTPUT_QOS)
                      for output, message_type in camera_outputs(config).items()}
        if camera.index == 0:
            self.ground.open(config)
            publishers |= self.ground.publishers
        camera.ground = self.ground
        return publishers


def camera_outputs(config: NodeConfig) -> dict[str, type]:
    """Output name -> message type of what the node publishes per camera."""
    outputs = {output: Image for output in IMAGE_OUTPUTS} | OUTPUT_TYPES
    outputs[SCORE_CAMERA_INFO] = CameraInfo
    if config.refine is not None:
        outputs[S2M_SCORE] = Image
    if vision_msgs is not None:
        outputs[DETECTIONS] = vision_msgs.Detection2DArray
    return outputs


def wanted_outputs(camera: Camera, config: NodeConfig) -> frozenset[str]:
    """The outputs this frame publishes: switched on and subscribed to, asked once per
    frame (a subscriber that comes or goes counts from the next frame)."""
    ground = {GRID} if camera.ground is not None and camera.ground.wanted() else set()
    return frozenset(ground) | frozenset(
        output for output, publisher in camera.publishers.items()
        if config.publish.get(output, True) and _subscribed(publisher))


def pipeline_outputs(wanted: frozenset[str], config: NodeConfig) -> Outputs:
    """What the pipeline computes for `wanted`: nothing that nobody reads."""
    return Outputs(
        score=config.score_resolution if "anomaly_score" in wanted else None,
        semantic="semantic" in wanted,
        obstacles=bool(wanted & {"obstacle_mask", "obstacle_markers", DETECTIONS, GRID,
                                 POSITIONS}),
        overlay="overlay" in wanted, s2m=S2M_SCORE in wanted)


def publish_result(camera: Camera, header: Header, result: FrameResult,
                   wanted: frozenset[str], config: NodeConfig,
                   model_size: tuple[int, int]) -> dict[str, float]:
    """Build and publish what `result` holds for the `wanted` outputs, its obstacles tracked
    and placed on the ground first by `camera.ground` (which publishes the grid and 3-D
    markers); returns the ms spent building the messages ("message_build") and handing them
    to DDS ("publish")."""
    start = time.perf_counter()
    ground = None
    if camera.ground is not None:
        placed = camera.ground.process(camera.index, header, camera.camera_info, result)
        result, ground = placed.result, placed.ground
    ids = {obstacle.id for obstacle in result.obstacles}
    messages = frame_messages(header, result, wanted, config, model_size, camera.camera_info,
                              ground, camera.outlined - ids)
    if result.mask is not None and "obstacle_markers" in wanted:
        camera.outlined = ids
    built = time.perf_counter()
    for output, message in messages:
        camera.publishers[output].publish(message)
    return {"message_build": (built - start) * 1000.0,
            "publish": (time.perf_counter() - built) * 1000.0}


def frame_messages(header: Header, result: FrameResult, wanted: frozenset[str],
                   config: NodeConfig, model_size: tuple[int, int],
                   info: CameraInfo | None,
                   ground: Sequence[GroundObstacle | None] | None = None,
                   ended: Iterable[int] = ()) -> list[tuple[str, Any]]:
    """(output, message) of what `result` holds for the `wanted` outputs, with the frame's
    `header`; `model_size` is the model-resolution score's (height, width), `info` the
    camera's newest calibration, `ground` where each obstacle stands, `ended` the ids of
    outlines to remove. The node publishes these; `replay` records them."""
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
            messages += [("obstacle_markers", marker)
                         for marker in outline_markers(header, result.obstacles, ended)]
        if DETECTIONS in wanted:
            messages.append((DETECTIONS, detection_array(header, result.obstacles, vision_msgs,
                                                         ground)))
    if info is not None:
        if "camera_info" in wanted:
            messages.append(("camera_info", camera_info_for(header, info)))
        # Needs only the size: published whether or not the score itself is.
        if config.score_resolution == "model" and SCORE_CAMERA_INFO in wanted:
            messages.append((SCORE_CAMERA_INFO, camera_info_for(header, info, model_size,
                                                                config.resize_mode)))
    return messages


def _subscribed(publisher) -> bool:
    """Whether anyone subscribes to `publisher` now (a cheap count from the middleware)."""
    return publisher is not None and publisher.get_subscription_count() > 0


def resize_note(frame_size: tuple[int, int], model_size: tuple[int, int]) -> str | None:
    """What the camera status says when frames (height, width) are stretched to a model input
    of another aspect ratio (more than 1% apart), else None."""
    (height, width), (model_height, model_width) = frame_size, model_size
    aspect, model_aspect = width / height, model_width / model_height
    if abs(aspect / model_aspect - 1.0) <= ASPECT_TOLERANCE:
        return None
    return (f"{width}x{height} frames (aspect {aspect:.2f}) stretched to the model's "
            f"{model_width}x{model_height} input (aspect {model_aspect:.2f}); parameter "
            "resize_mode letterbox or crop keeps the aspect")
