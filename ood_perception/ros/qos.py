"""The QoS of the node's topics: input presets, outputs, diagnostics, and `qos_overrides`.

Every topic the node creates with `QOS_OVERRIDES` takes `qos_overrides.<topic>.<publisher|
subscription>.{history,depth,reliability}` parameters, as rclcpp nodes that enable them do.
"""

from __future__ import annotations

from rclpy.publisher import Publisher
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions

from ood_perception.errors import ConfigurationError

# The profiles of parameter `input_qos`'s presets (parameters.INPUT_QOS names them). Depth 1:
# only the newest frame matters; a frame DDS overwrote is counted from the sequence numbers.
INPUT_QOS_PROFILES = {
    "sensor_data": QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                              reliability=ReliabilityPolicy.BEST_EFFORT),
    "reliable": QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                           reliability=ReliabilityPolicy.RELIABLE),
}
# camera_info: best effort matches reliable and best-effort camera drivers alike.
CAMERA_INFO_QOS = INPUT_QOS_PROFILES["sensor_data"]
# Outputs keep the last few messages reliably; reliable publishers also serve best-effort
# subscribers.
OUTPUT_QOS = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                        reliability=ReliabilityPolicy.RELIABLE)
DIAGNOSTICS_QOS = 10
QOS_OVERRIDES = QoSOverridingOptions.with_default_policies()
QOS_OVERRIDE_PREFIX = "qos_overrides."


def check_qos_overrides(given: list[str], entities: list) -> None:
    """A `qos_overrides.*` parameter for no topic of this node is a typo: refuse it (rclpy
    would ignore it silently). `entities`: the publishers and subscriptions that take them."""
    known = {f"{QOS_OVERRIDE_PREFIX}{entity.topic_name}."
             f"{'publisher' if isinstance(entity, Publisher) else 'subscription'}."
             f"{policy.name.lower()}" for entity in entities
             for policy in QOS_OVERRIDES.policy_kinds}
    unknown = sorted(set(given) - known)
    if unknown:
        topics = sorted({name[len(QOS_OVERRIDE_PREFIX):].rsplit(".", 2)[0] for name in known})
        raise ConfigurationError(f"QoS override(s) for no topic of this node: "
                                 f"{', '.join(unknown)}; its topics: {', '.join(topics)}")
