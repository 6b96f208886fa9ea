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

import math
import threading
from collections.abc import Callable

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ood_perception.backends import create_backend
from ood_perception.core.health import PROCESSING_ERROR, runtime_in_use
from ood_perception.core.pipeline import Pipeline
from ood_perception.core.stats import RunningStats
from ood_perception.errors import ConfigurationError
from ood_perception.ros.diagnostics import MESSAGE_INFO_CALLBACKS, Diagnostics
from ood_perception.ros.frame_slots import FrameSlots, PendingFrame
from ood_perception.ros.messages import decode_batch, stamp_seconds
from ood_perception.ros.parameter_declaration import (
    before_set,
    declare_parameters,
    declared_values,
)
from ood_perception.ros.parameters import PARAMETERS, NodeConfig, camera_info_beside, describe
from ood_perception.ros.publishing import (
    Camera,
    Publishers,
    pipeline_outputs,
    publish_result,
    wanted_outputs,
)
from ood_perception.ros.qos import (
    CAMERA_INFO_QOS,
    INPUT_QOS_PROFILES,
    QOS_OVERRIDES,
    check_qos_overrides,
)

WARN_THROTTLE_S = 5.0
LOST_IN_DDS = "lost_in_dds"
# Frames still waiting in a slot when the node deactivates or shuts down.
STOPPED = "stopped"


class NodeRuntime:
    """The model, topics and worker of one node; `lifecycle` makes its publishers managed.
    Declares the node's parameters (bad names raise `ConfigurationError`) and checks changes."""

    def __init__(self, node: Node, lifecycle: bool = False):
        self.node = node
        self._qos_overrides = declare_parameters(node)
        node.add_pre_set_parameters_callback(lambda parameters: before_set(
            parameters, self.pipeline.backend.info if self.pipeline is not None else None))
        node.add_on_set_parameters_callback(self.on_set_parameters)
        self._publishers = Publishers(node, lifecycle)
        self.diagnostics = Diagnostics(node, self._publishers)
        self.config: NodeConfig | None = None
        self.pipeline: Pipeline | None = None
        self.cameras: list[Camera] = []
        self._slots: FrameSlots | None = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def active(self) -> bool:
        return self._worker is not None

    def configure(self) -> bool:
        """Read the parameters and load the model (building a TensorRT engine if needed);
        False when `build_only` asked only for the engines (the model's and SAM's). Bad
        configuration raises `ConfigurationError` and leaves nothing loaded."""
        values = declared_values(self.node)
        unchecked = NodeConfig.from_values(values)  # bad parameters fail before a model loads
        if unchecked.build_only:  # the engines only: nothing is loaded
            from ood_perception.backends.tensorrt import build_node_engines

            for path in build_node_engines(**unchecked.build_engine_request()):
                self.node.get_logger().info(f"build_only: engine {path}")
            return False
        backend = create_backend(unchecked.backend, unchecked.model_path,
                                 **unchecked.backend_options())
        try:
            config = NodeConfig.from_values(values, backend.info)
            refiner = _open_refiner(config, backend)
        except Exception:  # nothing stays loaded
            backend.close()
            raise
        if math.isnan(values["score_threshold"]):  # `ros2 param get` shows the one in use
            self.node.set_parameters([Parameter("score_threshold", Parameter.Type.DOUBLE,
                                                config.postprocess.score_threshold)])
        self.config = config
        self.pipeline = Pipeline(backend, config.postprocess, refiner=refiner,
                                 resize_mode=config.resize_mode)
        window = max(2.0, 2 * config.diagnostics_period)
        self.cameras = [Camera(index=i, name=name, topic=config.input_topic(i),
                               stats=RunningStats(window_s=window, max_samples=100))
                        for i, name in enumerate(config.camera_names)]
        for camera in self.cameras:
            camera.publishers = self._publishers.for_camera(config, camera)
        self.diagnostics.open(runtime_in_use(backend))
        return True

    def cleanup(self) -> None:
        """Free the model and the publishers (idempotent)."""
        if self.active:
            self.deactivate()
        for camera in self.cameras:
            for publisher in camera.publishers.values():
                self._publishers.destroy(publisher)
        self.cameras = []
        self.diagnostics.close()
        if self.pipeline is not None:
            self.pipeline.backend.close()
            if self.pipeline.refiner is not None:
                self.pipeline.refiner.runner.close()
        self.pipeline = None

    def activate(self) -> None:
        """Subscribe to the cameras, start the worker and the diagnostics timer."""
        config = self.config
        self._slots = FrameSlots(len(self.cameras), on_superseded=lambda camera: (
            self.cameras[camera].stats.record_drop("superseded")))
        message_type = CompressedImage if config.input_transport == "compressed" else Image
        for camera in self.cameras:
            camera.gaps.reset()
            # Remapped like image_transport's: camera_info beside the resolved image topic.
            image_topic = self.node.resolve_topic_name(config.image_topics[camera.index])
            camera.subscription = self.node.create_subscription(
                message_type, config.transport_topic(image_topic), self._image_callback(camera),
                INPUT_QOS_PROFILES[config.input_qos], qos_overriding_options=QOS_OVERRIDES)
            camera.topic = camera.subscription.topic_name
            camera.info_subscription = self.node.create_subscription(
                CameraInfo, camera_info_beside(image_topic),
                lambda message, camera=camera: setattr(camera, "camera_info", message),
                CAMERA_INFO_QOS, qos_overriding_options=QOS_OVERRIDES)
        check_qos_overrides(self._qos_overrides, [
            entity for camera in self.cameras for entity in (
                *camera.publishers.values(), camera.subscription, camera.info_subscription)])
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="ood_perception_worker",
                                        daemon=True)
        self._worker.start()
        self.diagnostics.start(config.diagnostics_period, self.publish_diagnostics)
        if not MESSAGE_INFO_CALLBACKS:
            self.node.get_logger().warning(
                "this rclpy passes no MessageInfo to callbacks: frames DDS drops before the "
                "node cannot be counted (drops/lost_in_dds stays 0)")
        info = self.pipeline.backend.info
        self.node.get_logger().info(
            f"ready: model {info.model_name} ({info.score_name}, input {info.input_height}x"
            f"{info.input_width}), {describe(config)}, running on "
            f"{self.diagnostics.device_in_use}")

    def deactivate(self) -> None:
        """Stop taking frames: subscriptions, worker and timer go; frames still waiting are
        counted as `stopped`."""
        self.diagnostics.stop()
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

    def publish_diagnostics(self) -> None:
        """One `/diagnostics` report of the cameras and the model."""
        self.diagnostics.publish(self.cameras, self.config, self.pipeline.backend.info)

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
                self.node.get_logger().info(f"parameters changed: {changes}")
        except ConfigurationError as error:
            return SetParametersResult(successful=False, reason=str(error))
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
            batch = decode_batch(pending, config.max_frame_age, self._now_s())
            for item, reason, detail in batch.dropped:
                self._drop(item, reason, detail)
                unanswered.remove(item)
            frames, kept = batch.frames, batch.kept
            info = self.pipeline.backend.info
            model_size = (info.input_height, info.input_width)
            for item, frame in zip(kept, frames, strict=True):
                camera = self.cameras[item.camera]
                stretched = config.resize_mode == "stretch"  # say it once
                if stretched and camera.first_frame(frame.shape[:2], model_size):
                    self.node.get_logger().warning(f"camera {camera.name}: {camera.resize_note}")
            wanted = [wanted_outputs(self.cameras[item.camera], config) for item in kept]
            results = self.pipeline.process(
                frames, [pipeline_outputs(topics, config) for topics in wanted])
            if results:
                self.diagnostics.record_batch(results[0].timings)
            for item, result, topics, decode in zip(kept, results, wanted, batch.decode_ms,
                                                    strict=True):
                camera = self.cameras[item.camera]
                header = item.message.header
                timings = {"decode": decode, **result.timings,
                           **publish_result(camera, header, result, topics, config, model_size)}
                camera.stats.record_frame(stamp_seconds(header), self._now_s(), timings)
                unanswered.remove(item)
        except Exception as error:  # keep serving; the next batch may succeed
            self._record_failure(error, unanswered)

    def _record_failure(self, error: Exception, frames: list[PendingFrame]) -> None:
        description = self.diagnostics.record_failure(error)
        for item in frames:
            self.cameras[item.camera].stats.record_drop(PROCESSING_ERROR)
        self.node.get_logger().error(f"processing failed, {len(frames)} frame(s) dropped: "
                                     f"{description}", throttle_duration_sec=WARN_THROTTLE_S)

    def _drop(self, item: PendingFrame, reason: str, detail: str) -> None:
        camera = self.cameras[item.camera]
        camera.stats.record_drop(reason)
        self.node.get_logger().warning(
            f"dropped a frame on {camera.topic}: {detail} (dropped so far: "
            f"{camera.stats.snapshot()['drops_total']})", throttle_duration_sec=WARN_THROTTLE_S)


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
                        settings.detector_path or None, backend.info.score_range,
                        **config.refiner_options())
