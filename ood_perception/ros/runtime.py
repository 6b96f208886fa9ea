"""What `ood_perception_node` and its lifecycle twin share: parameters, model, topics, worker.

`NodeRuntime` adapts an rclpy node to the ROS-free core in four steps a lifecycle node
maps one to one: `configure` (parameters -> `NodeConfig`, load the model, create the
publishers), `activate` (subscriptions, worker thread, diagnostics timer), `deactivate`
and `cleanup`. Subscription callbacks only count the message and store it in its camera's
`FrameSlots` slot; the worker decodes, runs one batch and publishes. Every message a
camera publishes is answered or counted once under a drop reason, including the ones DDS
never delivered (from the publishers' sample sequence numbers, where rclpy passes them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.subscription import Subscription
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import ImageMarker

from ood_perception.backends import create_backend
from ood_perception.contract import IMAGE_OUTPUTS
from ood_perception.core.health import (
    PROCESSING_ERROR,
    camera_health,
    runtime_health,
    runtime_in_use,
)
from ood_perception.core.pipeline import FrameResult, Outputs, Pipeline
from ood_perception.core.stats import RunningStats, SequenceGaps
from ood_perception.errors import ConfigurationError, ImageDecodeError
from ood_perception.ros.frame_slots import FrameSlots, PendingFrame
from ood_perception.ros.messages import (
    camera_info_for,
    diagnostic_status,
    diagnostics_array,
    image_message,
    message_to_frame,
    stamp_seconds,
)
from ood_perception.ros.obstacle_messages import detection_array, outline_marker
from ood_perception.ros.parameters import NODE_NAME, PARAMETERS, NodeConfig, describe

try:  # a rosdep key on Humble and Jazzy, but no PyPI wheel: optional here
    from vision_msgs import msg as vision_msgs
except ImportError:
    vision_msgs = None

# Parameter kind -> the rclpy type used to declare parameters whose default is empty.
_EMPTY_TYPES = {"string_array": Parameter.Type.STRING_ARRAY,
                "integer_array": Parameter.Type.INTEGER_ARRAY}
WARN_THROTTLE_S = 5.0
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
# Every topic the node creates takes `qos_overrides.<topic>.<publisher|subscription>.
# {history,depth,reliability}` parameters, as rclcpp nodes that enable them do.
QOS_OVERRIDES = QoSOverridingOptions.with_default_policies()
QOS_OVERRIDE_PREFIX = "qos_overrides."
# Jazzy's rclpy hands a two-argument callback the message's MessageInfo (with
# `publication_sequence_number`); Humble's rclpy has no such callback type.
MESSAGE_INFO_CALLBACKS = hasattr(Subscription, "CallbackType")
LOST_IN_DDS = "lost_in_dds"
# Frames still waiting in a slot when the node deactivates or shuts down.
STOPPED = "stopped"
OUTPUT_TYPES = {"camera_info": CameraInfo, "obstacle_markers": ImageMarker}
DETECTIONS = "detections"
# With score_resolution "model": the calibration of the score image, scaled to its size.
SCORE_CAMERA_INFO = "score_camera_info"
# With refine "s2m": the S2M map (32FC1 in [0, 1]).
S2M_SCORE = "s2m_score"
# Stages timed once per batch; the model status reports them.
BATCH_STAGES = ("upload", "preprocess", "inference", "sam_encoder", "sam_decoder")


def declare_parameters(node: Node) -> None:
    """Declare `PARAMETERS` with descriptors `ros2 param describe` shows (ranges, choices);
    parameter names nobody declares (typos) raise `ConfigurationError`."""
    for name, spec in PARAMETERS.items():
        descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only,
                                         dynamic_typing=spec.kind == "double")
        if spec.bounds is not None and spec.kind == "double":
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(spec.bounds[0]), to_value=float(spec.bounds[1]), step=0.0)]
        elif spec.bounds is not None:
            descriptor.integer_range = [IntegerRange(
                from_value=int(spec.bounds[0]), to_value=int(spec.bounds[1]), step=1)]
        if spec.choices is not None:
            descriptor.additional_constraints = f"one of: {', '.join(spec.choices)}"
        default = _EMPTY_TYPES[spec.kind] if spec.default == [] else spec.default
        node.declare_parameter(name, default, descriptor)
    unknown = sorted(name for name in _overrides(node) if name not in PARAMETERS
                     and not node.has_parameter(name)
                     and not name.startswith(QOS_OVERRIDE_PREFIX))
    if unknown:
        raise ConfigurationError(f"unknown parameter(s) for {NODE_NAME}: {', '.join(unknown)}")


def _overrides(node: Node) -> dict:
    return getattr(node, "_parameter_overrides", {})


def declared_values(node: Node) -> dict:
    """The declared parameters' values (typed parameters without a value: their default)."""
    values = {}
    for name, spec in PARAMETERS.items():
        try:
            value = node.get_parameter(name).value
        except ParameterUninitializedException:
            value = None
        values[name] = spec.default if value is None else value
    return values


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


class NodeRuntime:
    """The model, topics and worker of one node; `lifecycle` makes its publishers managed."""

    def __init__(self, node: Node, lifecycle: bool = False):
        self.node = node
        self._lifecycle = lifecycle
        self.config: NodeConfig | None = None
        self.pipeline: Pipeline | None = None
        self.cameras: list[Camera] = []
        self._runtime_facts: dict[str, str] = {}
        self._diagnostics = None
        self._timer = None
        self._slots: FrameSlots | None = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._started_s = time.monotonic()
        self._lock = threading.Lock()
        self._failures = 0
        self._failures_reported = 0
        self._last_error = ""
        self._batch_stats = RunningStats()

    @property
    def active(self) -> bool:
        return self._worker is not None

    # --- configure / cleanup ------------------------------------------------------------

    def configure(self) -> bool:
        """Read the parameters and load the model (building a TensorRT engine if needed);
        False when `build_only` asked only for that. Bad configuration raises
        `ConfigurationError` and leaves nothing loaded."""
        values = declared_values(self.node)
        unchecked = NodeConfig.from_values(values)  # bad parameters fail before a model loads
        backend = create_backend(unchecked.backend, unchecked.model_path,
                                 **unchecked.backend_options())
        try:
            config = NodeConfig.from_values(values, backend.info)
        except Exception:
            backend.close()
            raise
        if config.build_only:
            backend.close()
            return False
        try:
            refiner = _open_refiner(config, backend)
        except Exception:
            backend.close()
            raise
        self.config = config
        self.pipeline = Pipeline(backend, config.postprocess, refiner=refiner)
        self._runtime_facts = runtime_in_use(backend)
        window = max(2.0, 2 * config.diagnostics_period)
        self.cameras = [Camera(index=i, name=name, topic=config.input_topic(i),
                               stats=RunningStats(window_s=window, max_samples=100))
                        for i, name in enumerate(config.camera_names)]
        for camera in self.cameras:
            camera.publishers = self._make_publishers(camera.index)
        self._diagnostics = self._publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS,
                                            overridable=False)
        return True

    def cleanup(self) -> None:
        """Free the model and the publishers (idempotent)."""
        if self.active:
            self.deactivate()
        for camera in self.cameras:
            for publisher in camera.publishers.values():
                self._destroy_publisher(publisher)
        self.cameras = []
        if self._diagnostics is not None:
            self._destroy_publisher(self._diagnostics)
            self._diagnostics = None
        if self.pipeline is not None:
            self.pipeline.backend.close()
            if self.pipeline.refiner is not None:
                self.pipeline.refiner.runner.close()
        self.pipeline = None

    def _publisher(self, message_type, topic: str, qos, overridable: bool = True):
        create = (self.node.create_lifecycle_publisher if self._lifecycle
                  else self.node.create_publisher)
        options = {"qos_overriding_options": QOS_OVERRIDES} if overridable else {}
        return create(message_type, topic, qos, **options)

    def _destroy_publisher(self, publisher) -> None:
        if self._lifecycle:
            self.node.destroy_lifecycle_publisher(publisher)
        else:
            self.node.destroy_publisher(publisher)

    def _make_publishers(self, camera: int) -> dict:
        config = self.config
        publishers = {output: self._publisher(Image, config.output_topic(camera, output),
                                              OUTPUT_QOS) for output in IMAGE_OUTPUTS}
        for output, message_type in OUTPUT_TYPES.items():
            publishers[output] = self._publisher(
                message_type, config.output_topic(camera, output), OUTPUT_QOS)
        publishers[SCORE_CAMERA_INFO] = self._publisher(
            CameraInfo, config.output_topic(camera, SCORE_CAMERA_INFO), OUTPUT_QOS)
        if config.refine is not None:
            publishers[S2M_SCORE] = self._publisher(
                Image, config.output_topic(camera, S2M_SCORE), OUTPUT_QOS)
        if vision_msgs is not None:
            publishers[DETECTIONS] = self._publisher(
                vision_msgs.Detection2DArray, config.output_topic(camera, DETECTIONS),
                OUTPUT_QOS)
        return publishers

    # --- activate / deactivate ----------------------------------------------------------

    def activate(self) -> None:
        """Subscribe to the cameras, start the worker and the diagnostics timer."""
        config = self.config
        self._slots = FrameSlots(len(self.cameras), on_superseded=lambda camera: (
            self.cameras[camera].stats.record_drop("superseded")))
        message_type = CompressedImage if config.input_transport == "compressed" else Image
        for camera in self.cameras:
            camera.gaps.reset()
            camera.subscription = self.node.create_subscription(
                message_type, camera.topic, self._image_callback(camera),
                INPUT_QOS_PROFILES[config.input_qos], qos_overriding_options=QOS_OVERRIDES)
            camera.info_subscription = self.node.create_subscription(
                CameraInfo, config.camera_info_topic(camera.index),
                lambda message, camera=camera: setattr(camera, "camera_info", message),
                CAMERA_INFO_QOS, qos_overriding_options=QOS_OVERRIDES)
        self._check_qos_overrides()
        self._stop.clear()
        self._started_s = time.monotonic()
        self._worker = threading.Thread(target=self._work, name="ood_perception_worker",
                                        daemon=True)
        self._worker.start()
        self._timer = self.node.create_timer(config.diagnostics_period, self.publish_diagnostics)
        if not MESSAGE_INFO_CALLBACKS:
            self.node.get_logger().warning(
                "this rclpy passes no MessageInfo to callbacks: frames DDS drops before the "
                "node cannot be counted (drops/lost_in_dds stays 0)")
        info = self.pipeline.backend.info
        self.node.get_logger().info(
            f"ready: model {info.model_name} ({info.score_name}, input {info.input_height}x"
            f"{info.input_width}), {describe(config)}, running on "
            f"{self._runtime_facts['device_in_use']}")

    def deactivate(self) -> None:
        """Stop taking frames: subscriptions, worker and timer go; frames still waiting are
        counted as `stopped`."""
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self._timer = None
        for camera in self.cameras:
            for name in ("subscription", "info_subscription"):
                if getattr(camera, name) is not None:
                    self.node.destroy_subscription(getattr(camera, name))
                    setattr(camera, name, None)
        self._stop.set()
        if self._slots is not None:
            for frame in self._slots.close():
                self.cameras[frame.camera].stats.record_drop(STOPPED)
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=10.0)
        self._worker = None

    def _check_qos_overrides(self) -> None:
        """A `qos_overrides.*` parameter no topic of this node declared is a typo: refuse it
        (rclpy would ignore it silently)."""
        unknown = sorted(name for name in _overrides(self.node)
                         if name.startswith(QOS_OVERRIDE_PREFIX)
                         and not self.node.has_parameter(name))
        if unknown:
            declared = self.node.get_parameters_by_prefix(QOS_OVERRIDE_PREFIX.rstrip("."))
            topics = sorted({name.split(".")[0] for name in declared})
            raise ConfigurationError(f"QoS override(s) for no topic of this node: "
                                     f"{', '.join(unknown)}; its topics: {', '.join(topics)}")

    def _image_callback(self, camera: Camera) -> Callable:
        """The subscription callback of `camera`: count the message, then hand it over."""
        def receive(message, sequence: int | None) -> None:
            camera.stats.record_received()
            subscription = camera.subscription  # None while it is being destroyed
            if subscription is not None and subscription.get_publisher_count() == 1:
                camera.stats.record_drop(LOST_IN_DDS, camera.gaps.observe(sequence))
            else:  # several publishers' numbers interleave: no exact count, restart it
                camera.gaps.reset()
            if not self._slots.put(camera.index, message):
                camera.stats.record_drop(STOPPED)

        if MESSAGE_INFO_CALLBACKS:
            return lambda message, info: receive(message,
                                                 info.get("publication_sequence_number"))
        return lambda message: receive(message, None)

    # --- parameters ---------------------------------------------------------------------

    def on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Apply run-time parameters to the loaded model's config, or check them before
        one is loaded; refuse bad values with the reason."""
        changes = {p.name: p.value for p in parameters if p.name in PARAMETERS}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            if self.config is None:
                NodeConfig.from_values(declared_values(self.node) | changes)
            else:
                config = self.config.with_runtime_values(changes, self.pipeline.backend.info)
                self.pipeline.update_config(config.postprocess)
                self.config = config
        except ConfigurationError as error:
            return SetParametersResult(successful=False, reason=str(error))
        self.node.get_logger().info(f"parameters changed: {changes}")
        return SetParametersResult(successful=True)

    # --- worker -------------------------------------------------------------------------

    def _work(self) -> None:
        cameras = len(self.cameras)
        while not self._stop.is_set():
            batch_wait = self.config.batch_wait if cameras > 1 else 0.0
            pending = self._slots.take(timeout=0.1, batch_wait=batch_wait)
            if pending:  # with the config of the moment the frames were taken
                self._process(pending, self.config)

    def _now_s(self) -> float:
        """The node clock (ROS time: follows /clock with use_sim_time), in seconds."""
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _process(self, pending: list[PendingFrame], config: NodeConfig) -> None:
        """Decode, run and publish one batch; every frame is published or counted as a drop
        exactly once, whatever fails."""
        unanswered = list(pending)
        try:
            frames, kept, decode_ms = [], [], []
            now = self._now_s()
            for item in pending:
                problem = _too_old(item, config, now)
                if problem is None:
                    start = time.perf_counter()
                    try:
                        frames.append(message_to_frame(item.message))
                        decode_ms.append((time.perf_counter() - start) * 1000.0)
                        kept.append(item)
                        continue
                    except ImageDecodeError as error:
                        problem = error.reason, str(error)
                    except Exception as error:  # a decoder bug must not sink the other cameras
                        problem = "decode_error", f"{type(error).__name__}: {error}"
                self._drop(item, *problem)
                unanswered.remove(item)
            wanted = [self._wanted(self.cameras[item.camera], config) for item in kept]
            results = self.pipeline.process(
                frames, [self._outputs(topics, config) for topics in wanted])
            if results:
                self._batch_stats.record_frame(timings={
                    stage: results[0].timings[stage] for stage in BATCH_STAGES
                    if stage in results[0].timings})
            for item, result, topics, decode in zip(kept, results, wanted, decode_ms,
                                                    strict=True):
                timings = {"decode": decode, **result.timings,
                           **self._publish(item, result, topics, config)}
                self.cameras[item.camera].stats.record_frame(
                    stamp_seconds(item.message.header), self._now_s(), timings)
                unanswered.remove(item)
        except Exception as error:  # keep serving; the next batch may succeed
            self._record_failure(error, unanswered)

    def _record_failure(self, error: Exception, frames: list[PendingFrame]) -> None:
        with self._lock:
            self._failures += 1
            self._last_error = f"{type(error).__name__}: {error}"
        for item in frames:
            self.cameras[item.camera].stats.record_drop(PROCESSING_ERROR)
        self.node.get_logger().error(f"processing failed, {len(frames)} frame(s) dropped: "
                                     f"{self._last_error}", throttle_duration_sec=WARN_THROTTLE_S)

    def _drop(self, item: PendingFrame, reason: str, detail: str) -> None:
        camera = self.cameras[item.camera]
        camera.stats.record_drop(reason)
        self.node.get_logger().warning(
            f"dropped a frame on {camera.topic}: {detail} (dropped so far: "
            f"{camera.stats.snapshot()['drops_total']})", throttle_duration_sec=WARN_THROTTLE_S)

    @staticmethod
    def _wanted(camera: Camera, config: NodeConfig) -> frozenset[str]:
        """The outputs this frame publishes: switched on and subscribed to, asked once per
        frame (a subscriber that comes or goes counts from the next frame)."""
        return frozenset(output for output, publisher in camera.publishers.items()
                         if config.publish.get(output, True) and _subscribed(publisher))

    @staticmethod
    def _outputs(wanted: frozenset[str], config: NodeConfig) -> Outputs:
        """What the pipeline computes for `wanted`: nothing that nobody reads."""
        return Outputs(
            score=config.score_resolution if "anomaly_score" in wanted else None,
            semantic="semantic" in wanted,
            obstacles=bool(wanted & {"obstacle_mask", "obstacle_markers", DETECTIONS}),
            overlay="overlay" in wanted, s2m=S2M_SCORE in wanted)

    def _publish(self, item: PendingFrame, result: FrameResult, wanted: frozenset[str],
                 config: NodeConfig) -> dict[str, float]:
        """Build and publish what `result` holds for the `wanted` outputs; returns the ms spent
        building the messages ("message_build") and handing them to DDS ("publish")."""
        header = item.message.header
        camera = self.cameras[item.camera]
        start = time.perf_counter()
        messages = []
        if result.anomaly_score is not None:
            messages.append(("anomaly_score",
                             image_message(header, result.anomaly_score, "32FC1")))
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
                messages.append(("obstacle_markers", outline_marker(header, result.obstacles)))
            if DETECTIONS in wanted:
                messages.append((DETECTIONS, detection_array(header, result.obstacles,
                                                             vision_msgs)))
        info = camera.camera_info
        if info is not None:
            if "camera_info" in wanted:
                messages.append(("camera_info", camera_info_for(header, info)))
            score = result.anomaly_score
            if config.score_resolution == "model" and score is not None \
                    and SCORE_CAMERA_INFO in wanted:
                messages.append((SCORE_CAMERA_INFO,
                                 camera_info_for(header, info, score.shape[:2])))
        built = time.perf_counter()
        for output, message in messages:
            camera.publishers[output].publish(message)
        return {"message_build": (built - start) * 1000.0,
                "publish": (time.perf_counter() - built) * 1000.0}

    # --- diagnostics --------------------------------------------------------------------

    def publish_diagnostics(self) -> None:
        """One status per camera and one for the model and its runtime."""
        config = self.config
        uptime = time.monotonic() - self._started_s
        prefix = self.node.get_name()
        statuses = []
        for camera in self.cameras:
            snapshot = camera.stats.snapshot()
            health = camera_health(snapshot, camera.reported_drops, config.health, uptime)
            camera.reported_drops = dict(snapshot["drops"])
            values = {"topic": camera.topic, **_camera_values(snapshot),
                      "camera_info": "received" if camera.camera_info is not None else "none",
                      "sequence_accounting": self._accounting(camera)}
            statuses.append(diagnostic_status(f"{prefix}: camera {camera.name}", camera.topic,
                                              health.level, health.message, values))
        with self._lock:
            failures = self._failures - self._failures_reported
            self._failures_reported = self._failures
            last_error = self._last_error
        health = runtime_health(self._runtime_facts, config.device, failures, last_error)
        info = self.pipeline.backend.info
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
        self._diagnostics.publish(diagnostics_array(self.node.get_clock().now().to_msg(),
                                                    statuses))

    @staticmethod
    def _accounting(camera: Camera) -> str:
        if not MESSAGE_INFO_CALLBACKS:
            return "unavailable (rclpy without MessageInfo)"
        subscription = camera.subscription
        publishers = subscription.get_publisher_count() if subscription is not None else 0
        if publishers > 1:
            return f"off ({publishers} publishers on the topic)"
        return "publication sequence numbers"

def _subscribed(publisher) -> bool:
    """Whether anyone subscribes to `publisher` now (a cheap count from the middleware)."""
    return publisher is not None and publisher.get_subscription_count() > 0


def _open_refiner(config: NodeConfig, backend):
    """S2M's refiner for `refine: s2m` (SAM's graphs on the node's backend and device, as
    `ood-perception run --refine s2m` opens them), else None; imported only then, as it
    needs torch."""
    if config.refine is None:
        return None
    from ood_perception.core.refine import RefineConfig, open_refiner

    settings = config.refine
    refine = RefineConfig.s2m(bool(settings.detector_path), settings.max_boxes,
                              settings.score_scale)
    return open_refiner(settings.sam_model_path, refine, config.backend, config.device,
                        settings.detector_path or None, backend.info.score_range)


def _too_old(item: PendingFrame, config: NodeConfig, now: float) -> tuple[str, str] | None:
    """(reason, detail) when the frame is older than `max_frame_age`, else None."""
    age = now - stamp_seconds(item.message.header)
    if config.max_frame_age > 0 and age > config.max_frame_age:
        return "too_old", f"{age:.3f} s old, max_frame_age {config.max_frame_age:g} s"
    return None


def _camera_values(snapshot: dict) -> dict:
    """The snapshot keys a camera status carries, in a reader's order."""
    keys = ("rate_hz", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "frames_total",
            "drops_total", "received_total")
    values = {key: snapshot[key] for key in keys}
    values |= {key: value for key, value in snapshot.items() if key.endswith("_ms")
               and key not in values}
    values["drops"] = snapshot["drops"]
    return values
