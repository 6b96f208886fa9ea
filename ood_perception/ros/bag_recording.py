"""What `replay --out` records of each frame: the live node's own messages, topics and QoS.

The messages are built by `publishing.frame_messages`, the function the node publishes from,
and serialized by rclpy, so a scored bag is what `ros2 bag record` of the node would hold:
`/<node>/anomaly_score`, `obstacle_mask`, `overlay`, `obstacle_markers`, `semantic` when
switched on, `camera_info` (and `score_camera_info` at the model's resolution) when the bag
has the camera's calibration. vision_msgs detections are left out: rosbags has no type for
them. Obstacles are tracked per camera as the node tracks them (ids in the outlines), and
`~/obstacle_positions` records where each stands when the bag has the camera's calibration
and the params file its `camera_extrinsics`.
"""

from __future__ import annotations

from typing import Any

from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from ood_perception.contract import ModelInfo
from ood_perception.core.ground import CameraModel, CameraPose
from ood_perception.core.pipeline import FrameResult
from ood_perception.core.tracking import CameraTracks, tracked_result
from ood_perception.errors import ConfigurationError
from ood_perception.io.scored_bag import OfferedQos, OutputTopic, RecordingPlan
from ood_perception.ros.ground_messages import position_markers
from ood_perception.ros.ground_outputs import POSITIONS
from ood_perception.ros.parameters import (
    EXTRINSICS_PREFIX,
    NODE_NAME,
    PARAMETERS,
    REFINE_PARAMETERS,
    NodeConfig,
    camera_info_beside,
)
from ood_perception.ros.publishing import (
    DETECTIONS,
    SCORE_CAMERA_INFO,
    camera_outputs,
    frame_messages,
    pipeline_outputs,
)
from ood_perception.ros.qos import OUTPUT_QOS

CALIBRATION_OUTPUTS = ("camera_info", SCORE_CAMERA_INFO)


class NodeRecorder:
    """Records a frame as `ood_perception_node` named `node` with the params file's values
    `params` would publish it to a recorder subscribed to everything (`overlay`: the overlay
    too); `plan` sets it up for one bag's cameras, `messages` records a frame."""

    def __init__(self, params: dict[str, Any], overlay: bool = True, node: str = f"/{NODE_NAME}"):
        # The node's settings that shape its outputs; refining needs SAM's graphs, which
        # replay does not open.
        self.params = {name: value for name, value in params.items()
                       if name in PARAMETERS and name not in REFINE_PARAMETERS}
        self.overlay = overlay
        self.node = node
        nested = params.get(EXTRINSICS_PREFIX.rstrip("."), {})
        self.extrinsics = {name[len(EXTRINSICS_PREFIX):]: value for name, value in
                           params.items() if name.startswith(EXTRINSICS_PREFIX)} | (
            nested if isinstance(nested, dict) else {})
        self._config: NodeConfig | None = None
        self._cameras: dict[str, tuple[int, frozenset[str]]] = {}
        self._tracks = CameraTracks()
        self._shown: dict[str, tuple[set[int], set[int]]] = {}  # outlined, placed ids

    def plan(self, cameras: list[str], bag_topics: set[str]) -> RecordingPlan:
        bases = [topic.removesuffix("/compressed") for topic in cameras]
        values = self.params | {"image_topics": bases,
                                "model_path": self.params.get("model_path") or "replay"}
        if list(self.params.get("image_topics", [])) != bases:
            values.pop("camera_names", None)  # named for other topics: derive them
        config = NodeConfig.from_values(values)
        types = camera_outputs(config)
        topics, outputs, calibrations = {}, {}, {}
        self._cameras = {}
        for index, (camera, base) in enumerate(zip(cameras, bases, strict=True)):
            info_topic = camera_info_beside(base)
            wanted = frozenset(
                output for output in types if config.publish.get(output, True)
                and output != DETECTIONS and (self.overlay or output != "overlay")
                and (output not in CALIBRATION_OUTPUTS or info_topic in bag_topics)
                and (output != SCORE_CAMERA_INFO or config.score_resolution == "model"))
            self._cameras[camera] = (index, wanted)
            outputs[camera] = pipeline_outputs(wanted, config)
            if info_topic in bag_topics:
                calibrations[camera] = info_topic
            for output in wanted:
                topics[self._topic(config, index, output)] = _msgtype(types[output])
        name_of = dict(zip(cameras, config.camera_names, strict=True))
        self._tracks = CameraTracks(config.ground.tracking, {
            camera: CameraPose.from_extrinsics(self.extrinsics[name],
                                               f"parameter {EXTRINSICS_PREFIX}{name}")
            for camera, name in name_of.items() if name in self.extrinsics})
        self._shown = {camera: (set(), set()) for camera in cameras}
        if self._tracks.poses:
            topics[f"{self.node}/{POSITIONS}"] = "visualization_msgs/msg/MarkerArray"
        self._config = config
        qos = OfferedQos(history=OUTPUT_QOS.history.value, depth=OUTPUT_QOS.depth,
                         reliability=OUTPUT_QOS.reliability.value,
                         durability=OUTPUT_QOS.durability.value)
        return RecordingPlan(topics=[OutputTopic(topic, msgtype, qos)
                                     for topic, msgtype in sorted(topics.items())],
                             outputs=outputs, camera_info=calibrations)

    def messages(self, camera: str, header: tuple[int, int, str], result: FrameResult,
                 info: ModelInfo, camera_info: bytes | None) -> list[tuple[str, bytes]]:
        index, wanted = self._cameras[camera]
        sec, nanosec, frame_id = header
        calibration = deserialize_message(camera_info, CameraInfo) if camera_info else None
        header = Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)
        recorded, ground, ended = [], None, set()
        if result.mask is not None:  # tracked as the node tracks them
            try:
                if calibration is not None:
                    self._tracks.calibrate(camera, CameraModel.from_camera_info(calibration))
            except ConfigurationError:
                pass  # a calibration the node cannot use either: ids, no distances
            tracks = self._tracks.update(camera, result.obstacles, result.mask)
            result = tracked_result(result, tracks, self._tracks.config)
            ground = [track.ground for track in tracks]
            outlined, placed = self._shown[camera]
            ids, now_placed = {t.id for t in tracks}, {t.id for t in tracks if t.ground}
            ended = outlined - ids
            if camera in self._tracks.poses:
                base = Header(stamp=header.stamp, frame_id=self._config.ground.base_frame)
                recorded.append((f"{self.node}/{POSITIONS}", serialize_message(position_markers(
                    base, self._config.camera_names[index], tracks, placed - now_placed))))
            self._shown[camera] = (ids, now_placed)
        messages = frame_messages(header, result, wanted, self._config,
                                  (info.input_height, info.input_width), calibration, ground,
                                  ended)
        return [(self._topic(self._config, index, output), serialize_message(message))
                for output, message in messages] + recorded

    def _topic(self, config: NodeConfig, index: int, output: str) -> str:
        """The node's `~/...` output topic under this recorder's node name."""
        return self.node + config.output_topic(index, output).removeprefix("~")


def _msgtype(message_type: type) -> str:
    """`sensor_msgs.msg.Image` -> `sensor_msgs/msg/Image`, as bags name types."""
    return f"{message_type.__module__.split('.')[0]}/msg/{message_type.__name__}"
