"""`ood_perception_node`: camera images in, anomaly score and obstacle mask out.

A thin rclpy adapter over the ROS-free core: parameters -> `NodeConfig`, messages ->
`FrameSlots` -> one worker thread running `Pipeline.process` -> output messages that keep
the input header. Subscription callbacks only store the newest message per camera, so
they never wait for inference.
"""

from __future__ import annotations

import sys
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import (
    NameValidationException,
    ParameterException,
    ParameterUninitializedException,
)
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from ood_perception.backends import create_backend
from ood_perception.contract import IMAGE_OUTPUTS
from ood_perception.core.pipeline import FrameResult, Pipeline
from ood_perception.core.stats import RunningStats
from ood_perception.errors import ConfigurationError, ImageDecodeError, OodPerceptionError
from ood_perception.ros.frame_slots import FrameSlots, PendingFrame
from ood_perception.ros.messages import (
    ERROR,
    OK,
    WARN,
    diagnostics_message,
    image_message,
    message_to_rgb,
    stamp_seconds,
)
from ood_perception.ros.parameters import NODE_NAME, PARAMETERS, NodeConfig, describe

# Parameter kind -> the rclpy type used to declare parameters whose default is empty.
_EMPTY_TYPES = {"string_array": Parameter.Type.STRING_ARRAY,
                "integer_array": Parameter.Type.INTEGER_ARRAY}
WARN_THROTTLE_S = 5.0
# Outputs keep the last few messages reliably; reliable publishers also serve best-effort
# subscribers.
OUTPUT_QOS = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                        reliability=ReliabilityPolicy.RELIABLE)
INPUT_QOS = {
    "sensor_data": QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                              reliability=ReliabilityPolicy.BEST_EFFORT),
    "reliable": QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                           reliability=ReliabilityPolicy.RELIABLE),
}


class OodPerceptionNode(Node):
    """Loads the model at construction; a bad configuration raises `ConfigurationError`."""

    def __init__(self, **node_options):
        super().__init__(NODE_NAME, **node_options)
        self._declare_parameters()
        values = self._declared_values()
        unchecked = NodeConfig.from_values(values)  # bad parameters fail before a model loads
        backend = create_backend(unchecked.backend, unchecked.model_path,
                                 **unchecked.backend_options())
        self._config = NodeConfig.from_values(values, backend.info)
        self.build_only = self._config.build_only
        if self.build_only:
            self.get_logger().info(f"build_only: engine for {self._config.model_path} is built "
                                   "and cached; exiting")
            return
        self._pipeline = Pipeline(backend, self._config.postprocess)
        self._stats = RunningStats(window_s=max(5.0, 2 * self._config.diagnostics_period))
        # Frames lost to bad input or age ("dropped") and failed batches ("inference"); frames
        # superseded by a newer one while the worker was busy are normal and not counted here.
        self._errors_seen = {"dropped": 0, "inference": 0}
        self._errors_reported = dict(self._errors_seen)
        self._last_error = ""
        self._slots = FrameSlots(len(self._config.image_topics),
                                 on_superseded=lambda _: self._stats.record_drop("superseded"))
        self._outputs = [self._make_publishers(i) for i in range(len(self._config.camera_names))]
        self._inputs = [self._subscribe(i) for i in range(len(self._config.image_topics))]
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(self._config.diagnostics_period,
                                                    self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="ood_perception_worker",
                                        daemon=True)
        self._worker.start()
        info = backend.info
        self.get_logger().info(f"ready: model {info.model_name} ({info.score_name}, input "
                               f"{info.input_height}x{info.input_width}), "
                               f"{describe(self._config)}")

    # --- parameters ---------------------------------------------------------------------

    def _declare_parameters(self) -> None:
        for name, spec in PARAMETERS.items():
            descriptor = ParameterDescriptor(description=spec.description,
                                             read_only=spec.read_only,
                                             dynamic_typing=spec.kind == "double")
            if spec.bounds is not None:
                descriptor.floating_point_range = [FloatingPointRange(
                    from_value=spec.bounds[0], to_value=spec.bounds[1], step=0.0)]
            default = _EMPTY_TYPES[spec.kind] if spec.default == [] else spec.default
            self.declare_parameter(name, default, descriptor)
        overrides = getattr(self, "_parameter_overrides", {})
        unknown = sorted(name for name in overrides if name not in PARAMETERS
                         and not self.has_parameter(name)
                         and not name.startswith("qos_overrides."))
        if unknown:
            raise ConfigurationError(f"unknown parameter(s) for {NODE_NAME}: {', '.join(unknown)}")

    def _declared_values(self) -> dict:
        values = {}
        for name, spec in PARAMETERS.items():
            try:
                value = self.get_parameter(name).value
            except ParameterUninitializedException:  # typed parameter without a default
                value = None
            values[name] = spec.default if value is None else value
        return values

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters if p.name in PARAMETERS}
        try:
            config = self._config.with_runtime_values(changes, self._pipeline.backend.info)
        except ConfigurationError as error:
            return SetParametersResult(successful=False, reason=str(error))
        self._pipeline.update_config(config.postprocess)
        self._config = config
        self.get_logger().info(f"parameters changed: {changes}")
        return SetParametersResult(successful=True)

    # --- topics -------------------------------------------------------------------------

    def _make_publishers(self, camera: int) -> dict:
        return {output: self.create_publisher(
            Image, self._config.output_topic(camera, output), OUTPUT_QOS)
            for output in IMAGE_OUTPUTS}

    def _subscribe(self, camera: int):
        message_type = CompressedImage if self._config.input_transport == "compressed" else Image
        return self.create_subscription(
            message_type, self._config.input_topic(camera),
            lambda message, camera=camera: self._slots.put(camera, message),
            INPUT_QOS[self._config.input_qos])

    # --- worker -------------------------------------------------------------------------

    def _work(self) -> None:
        cameras = len(self._config.image_topics)
        while not self._stop.is_set():
            batch_wait = self._config.batch_wait if cameras > 1 else 0.0
            try:
                pending = self._slots.take(timeout=0.1, batch_wait=batch_wait)
                if pending:  # the config of the moment the frames were taken
                    self._process(pending, self._config)
            except Exception as error:  # the worker must outlive any fault: it is the output
                self._record_failure(error, 0)
                self._stop.wait(0.1)

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _process(self, pending: list[PendingFrame], config: NodeConfig) -> None:
        """Decode, run and publish one batch; every frame is either published or counted as
        a drop exactly once (a fault outside that, e.g. at shutdown, reaches `_work`)."""
        frames, kept, decode_ms = [], [], []
        now = self._now_s()
        for item in pending:
            topic = config.input_topic(item.camera)
            if config.max_frame_age > 0 and now - stamp_seconds(item.message.header) > (
                    config.max_frame_age):
                self._drop("too_old", f"frame older than max_frame_age {config.max_frame_age} s "
                           f"on {topic}")
                continue
            start = time.perf_counter()
            try:
                frames.append(message_to_rgb(item.message))
            except ImageDecodeError as error:
                self._drop(error.reason, f"dropped a frame on {topic}: {error}")
                continue
            except Exception as error:  # a decoder bug must not sink the other cameras
                self._drop("decode_error", f"dropped a frame on {topic}: "
                           f"{type(error).__name__}: {error}")
                continue
            decode_ms.append((time.perf_counter() - start) * 1000.0)
            kept.append(item)
        published = 0
        try:
            results = self._pipeline.process(frames)
            for item, frame, result, decode in zip(kept, frames, results, decode_ms,
                                                   strict=True):
                start = time.perf_counter()
                self._publish(item, frame, result, config)
                published += 1
                timings = {"decode": decode, **result.timings,
                           "publish": (time.perf_counter() - start) * 1000.0}
                self._stats.record_frame(stamp_seconds(item.message.header), self._now_s(),
                                         timings)
        except Exception as error:  # keep serving; the next frame may succeed
            self._record_failure(error, len(kept) - published)

    def _record_failure(self, error: Exception, frames: int) -> None:
        self._errors_seen["inference"] += 1
        self._last_error = f"{type(error).__name__}: {error}"
        self._stats.record_drop("processing_error", frames)
        self.get_logger().error(f"processing failed, {frames} frame(s) dropped: "
                                f"{self._last_error}", throttle_duration_sec=WARN_THROTTLE_S)

    def _drop(self, reason: str, message: str) -> None:
        self._errors_seen["dropped"] += 1
        self._stats.record_drop(reason)
        self.get_logger().warning(f"{message} (dropped so far: {self._drop_count()})",
                                  throttle_duration_sec=WARN_THROTTLE_S)

    def _drop_count(self) -> int:
        return self._stats.snapshot()["drops_total"]

    def _publish(self, item: PendingFrame, frame, result: FrameResult, config: NodeConfig) -> None:
        header = item.message.header
        publishers = self._outputs[item.camera]
        if config.publish["anomaly_score"]:
            publishers["anomaly_score"].publish(
                image_message(header, result.anomaly_score, "32FC1"))
        if config.publish["obstacle_mask"]:
            publishers["obstacle_mask"].publish(image_message(header, result.mask, "mono8"))
        if config.publish["semantic"] and result.semantic is not None:
            publishers["semantic"].publish(image_message(header, result.semantic, "mono8"))
        overlay = publishers["overlay"]
        if config.publish["overlay"] and overlay.get_subscription_count() > 0:
            overlay.publish(image_message(header, self._pipeline.overlay(frame, result), "bgr8"))

    # --- diagnostics --------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        snapshot = self._stats.snapshot()
        errors, previous = dict(self._errors_seen), self._errors_reported
        self._errors_reported = errors
        if errors["inference"] > previous["inference"]:
            level, summary = ERROR, f"inference failing: {self._last_error}"
        elif errors["dropped"] > previous["dropped"]:
            level, summary = WARN, (f"{snapshot['rate_hz']:.1f} Hz, "
                                    f"{errors['dropped'] - previous['dropped']} frame(s) dropped "
                                    "(malformed or too old, see drops/*)")
        elif snapshot["frames_total"] == 0:
            level, summary = WARN, "waiting for images"
        elif snapshot["rate_hz"] == 0.0:
            window = self._stats.window_s
            level, summary = WARN, f"stalled: under 2 frames in the last {window:g} s"
        else:
            level, summary = OK, (f"{snapshot['rate_hz']:.1f} Hz, latency p50 "
                                  f"{snapshot['latency_p50_ms']:.0f} ms")
        info = self._pipeline.backend.info
        values = {"backend": self._config.backend, "device": self._config.device,
                  "model": info.model_name, "score": info.score_name,
                  "score_threshold": self._config.postprocess.score_threshold, **snapshot}
        self._diagnostics.publish(diagnostics_message(
            self.get_clock().now().to_msg(), f"{self.get_name()}: anomaly segmentation",
            self._config.device, level, summary, values))

    def close(self) -> None:
        """Stop the worker and release the backend (idempotent)."""
        if self.build_only:
            return
        self._stop.set()
        self._slots.close()
        if self._worker.is_alive():
            self._worker.join(timeout=10.0)
        self._pipeline.backend.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of `ros2 run ood_perception ood_perception_node`; 2 on bad configuration."""
    rclpy.init(args=argv)
    node = None
    code = 0
    try:
        node = OodPerceptionNode()
        if not node.build_only:
            rclpy.spin(node)
    except (OodPerceptionError, ParameterException, NameValidationException) as error:
        print(f"{NODE_NAME}: error: {error}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
