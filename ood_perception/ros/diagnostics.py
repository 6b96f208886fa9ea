"""`/diagnostics`: one status per camera and one for the model and the runtime in use.

Follows diagnostic_updater's conventions (a `DiagnosticArray` per period, `<node>: <what>`
names, key/value pairs); the levels come from `core.health`.
"""

from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.subscription import Subscription

from ood_perception.contract import ModelInfo
from ood_perception.core.health import camera_health, runtime_health
from ood_perception.core.stats import RunningStats
from ood_perception.ros.messages import diagnostic_status, diagnostics_array
from ood_perception.ros.parameters import NodeConfig
from ood_perception.ros.publishing import Camera, Publishers
from ood_perception.ros.qos import DIAGNOSTICS_QOS

# Jazzy's rclpy hands a two-argument callback the message's MessageInfo (with
# `publication_sequence_number`); Humble's rclpy has no such callback type.
MESSAGE_INFO_CALLBACKS = hasattr(Subscription, "CallbackType")
# Stages timed once per batch; the model status reports them.
BATCH_STAGES = ("upload", "preprocess", "inference", "sam_encoder", "sam_decoder")


class Diagnostics:
    """The `/diagnostics` publisher and what the model status counts between reports."""

    def __init__(self, node: Node, publishers: Publishers):
        self.node = node
        self._publishers = publishers
        self._publisher = None
        self._timer = None
        self._runtime_facts: dict[str, str] = {}
        self._started_s = time.monotonic()
        self._lock = threading.Lock()
        self._failures = 0
        self._failures_reported = 0
        self._last_error = ""
        self._batch_stats = RunningStats()

    def open(self, runtime_facts: dict[str, str]) -> None:
        """Create the publisher for a loaded model whose runtime is `runtime_facts`."""
        self._runtime_facts = runtime_facts
        self._publisher = self._publishers.create(DiagnosticArray, "/diagnostics",
                                                  DIAGNOSTICS_QOS, overridable=False)

    @property
    def device_in_use(self) -> str:
        return self._runtime_facts["device_in_use"]

    def close(self) -> None:
        self.stop()
        if self._publisher is not None:
            self._publishers.destroy(self._publisher)
            self._publisher = None

    def start(self, period_s: float, report) -> None:
        """Call `report` every `period_s` seconds from now on."""
        self._started_s = time.monotonic()
        # Health is timed on the steady clock: under use_sim_time a ROS-time timer stops
        # with /clock, and a stalled bag would never turn ERROR.
        self._timer = self.node.create_timer(period_s, report,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))

    def stop(self) -> None:
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self._timer = None

    def record_batch(self, timings: dict[str, float]) -> None:
        self._batch_stats.record_frame(timings={
            stage: timings[stage] for stage in BATCH_STAGES if stage in timings})

    def record_failure(self, error: Exception) -> str:
        """Count a failed batch; its one-line description."""
        with self._lock:
            self._failures += 1
            self._last_error = f"{type(error).__name__}: {error}"
            return self._last_error

    def publish(self, cameras: list[Camera], config: NodeConfig, info: ModelInfo) -> None:
        """One report: a status per camera and one for the model and its runtime."""
        uptime = time.monotonic() - self._started_s
        prefix = self.node.get_name()
        statuses = []
        for camera in cameras:
            snapshot = camera.stats.snapshot()
            health = camera_health(snapshot, camera.reported_drops, config.health, uptime)
            camera.reported_drops = dict(snapshot["drops"])
            values = {"topic": camera.topic, **_camera_values(snapshot),
                      "camera_info": "received" if camera.camera_info is not None else "none",
                      "sequence_accounting": _accounting(camera)}
            message = health.message
            if camera.resize_note is not None:
                values["resize"] = camera.resize_note
                message = f"{message}; {camera.resize_note}"
            statuses.append(diagnostic_status(f"{prefix}: camera {camera.name}", camera.topic,
                                              health.level, message, values))
        with self._lock:
            failures = self._failures - self._failures_reported
            self._failures_reported = self._failures
            last_error = self._last_error
        health = runtime_health(self._runtime_facts, config.device, failures, last_error)
        batches = self._batch_stats.snapshot()
        values = {"model": info.model_name, "score": info.score_name,
                  "input_size": f"{info.input_height}x{info.input_width}",
                  "device": config.device, **self._runtime_facts,
                  "score_threshold": config.postprocess.score_threshold,
                  "batches_total": batches["frames_total"],
                  "batches_failed": self._failures, "last_error": last_error or "none"}
        values |= {key: value for key, value in batches.items() if key.endswith("_ms")
                   and key.split("_")[0] in BATCH_STAGES}
        statuses.append(diagnostic_status(f"{prefix}: model", self._runtime_facts[
            "device_in_use"], health.level, health.message, values))
        self._publisher.publish(diagnostics_array(self.node.get_clock().now().to_msg(),
                                                  statuses))


def _accounting(camera: Camera) -> str:
    if not MESSAGE_INFO_CALLBACKS:
        return "unavailable (rclpy without MessageInfo)"
    subscription = camera.subscription
    publishers = subscription.get_publisher_count() if subscription is not None else 0
    if publishers > 1:
        return f"off ({publishers} publishers on the topic)"
    return "publication sequence numbers"


def _camera_values(snapshot: dict) -> dict:
    """The snapshot keys a camera status carries, in a reader's order."""
    keys = ("rate_hz", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "frames_total",
            "drops_total", "received_total")
    values = {key: snapshot[key] for key in keys}
    values |= {key: value for key, value in snapshot.items() if key.endswith("_ms")
               and key not in values}
    values["drops"] = snapshot["drops"]
    return values
