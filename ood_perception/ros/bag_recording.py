"""What `replay --out` records of each frame: the live node's own messages, topics and QoS.

The messages are built by `publishing.frame_messages`, the function the node publishes from,
and serialized by rclpy, so a scored bag is what `ros2 bag record` of the node would hold:
`/<node>/anomaly_score`, `obstacle_mask`, `overlay`, `obstacle_markers`, `semantic` when
switched on, `camera_info` (and `score_camera_info` at the model's resolution) when the bag
has the camera's calibration. vision_msgs detections are left out: rosbags has no type for
them.
"""

from __future__ import annotations

from typing import Any

from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from ood_perception.contract import ModelInfo
from ood_perception.core.pipeline import FrameResult
from ood_perception.io.scored_bag import OfferedQos, OutputTopic, RecordingPlan
from ood_perception.ros.parameters import (
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
        self._config: NodeConfig | None = None
        self._cameras: dict[str, tuple[int, frozenset[str]]] = {}

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
        messages = frame_messages(Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id),
                                  result, wanted, self._config,
                                  (info.input_height, info.input_width), calibration)
        return [(self._topic(self._config, index, output), serialize_message(message))
                for output, message in messages]

    def _topic(self, config: NodeConfig, index: int, output: str) -> str:
        """The node's `~/...` output topic under this recorder's node name."""
        return self.node + config.output_topic(index, output).removeprefix("~")


def _msgtype(message_type: type) -> str:
    """`sensor_msgs.msg.Image` -> `sensor_msgs/msg/Image`, as bags name types."""
    return f"{message_type.__module__.split('.')[0]}/msg/{message_type.__name__}"
