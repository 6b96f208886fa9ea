"""The node's parameters as one validated, ROS-free config: names, defaults, checks, topics.

`node.py` declares exactly `PARAMETERS`, reads them into `NodeConfig.from_values` and
rebuilds the runtime part with `NodeConfig.with_runtime_values` when `ros2 param set`
changes it. Everything here runs without rclpy, so start-up checks are unit-tested.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ood_perception.backends import BACKENDS, BATCH_SIZED, PRECISIONS
from ood_perception.backends.device import DEVICE_HELP, parse_device
from ood_perception.contract import ModelInfo
from ood_perception.core.ground import GridConfig
from ood_perception.core.health import HealthLimits
from ood_perception.core.pipeline import SCORE_SIZES
from ood_perception.core.placement import RESIZE_MODES
from ood_perception.core.postprocess import PostprocessConfig
from ood_perception.core.tracking import TrackingConfig
from ood_perception.errors import ConfigurationError
from ood_perception.models.s2m import REFINE_MODES
from ood_perception.models.s2m.proposals import ProposalConfig

NODE_NAME = "ood_perception_node"
# Params files written here key their parameters to any node, so they still apply when the
# node runs in a namespace or under another name.
PARAMS_FILE_KEY = "/**"
TRANSPORTS = ("raw", "compressed")
# Input QoS presets by name (the node maps each to its profile); `qos_overrides.<topic>.*`
# parameters refine them per topic.
INPUT_QOS = ("sensor_data", "reliable")
# ROS name tokens: ASCII letters, digits and underscores, not starting with a digit.
_TOKEN = r"[A-Za-z_][A-Za-z0-9_]*"
_TOPIC = re.compile(rf"(~/|/)?{_TOKEN}(/{_TOKEN})*")


@dataclass(frozen=True)
class ParameterSpec:
    """One ROS parameter: its default (which fixes its type), whether it is fixed at start-up."""

    default: Any
    kind: str  # "string", "double", "integer", "bool", "string_array", "integer_array"
    description: str
    read_only: bool = False
    # Inclusive (low, high) of a number; the node declares it as the descriptor's range, so
    # `ros2 param describe` shows it and rclpy refuses values outside it.
    bounds: tuple[float, float] | None = None
    # The values a string may take; `ros2 param describe` lists them as its constraints.
    choices: tuple[str, ...] | None = None


# Upper bounds of the integer parameters: a 100-megapixel frame, a 1000-pixel reach.
MAX_PIXELS = 100_000_000
MAX_DILATION = 1000
# Name -> spec. Read-only parameters need a restart; the others apply on `ros2 param set`.
PARAMETERS: dict[str, ParameterSpec] = {
    "model_path": ParameterSpec("", "string", "exported contract model (.onnx; .pt for torch)",
                                read_only=True),
    "backend": ParameterSpec("onnxruntime", "string", "inference runtime", read_only=True,
                             choices=tuple(sorted(BACKENDS))),
    "device": ParameterSpec("cpu", "string", DEVICE_HELP, read_only=True),
    "precision": ParameterSpec("", "string",
                               "torch: fp32, fp16 or bf16; tensorrt: fp16 or fp32; empty: the "
                               "backend's default", read_only=True),
    "build_only": ParameterSpec(False, "bool",
                                "tensorrt: build and cache its engines (with S2M, SAM's too), "
                                "then exit", read_only=True),
    "image_topics": ParameterSpec(["/camera/image_raw"], "string_array",
                                  "camera image topics (raw sensor_msgs/Image)", read_only=True),
    "camera_names": ParameterSpec([], "string_array",
                                  "output namespace per topic when several; default: derived "
                                  "from the topic names", read_only=True),
    "input_transport": ParameterSpec("raw", "string",
                                     "raw: Image on the topic; compressed: CompressedImage on "
                                     "<topic>/compressed", read_only=True, choices=TRANSPORTS),
    "input_qos": ParameterSpec("sensor_data", "string",
                               "sensor_data (best effort, depth 1) or reliable (depth 1); "
                               "qos_overrides.<topic>.subscription.* refine it",
                               read_only=True, choices=INPUT_QOS),
    "score_threshold": ParameterSpec(math.nan, "double",
                                     "pixels scoring above are obstacles; NaN: midpoint of the "
                                     "model's score_range"),
    "min_obstacle_area": ParameterSpec(100, "integer", "smallest obstacle blob in pixels",
                                       bounds=(0, MAX_PIXELS)),
    "gating_classes": ParameterSpec([], "integer_array",
                                    "keep obstacles only on or next to these class ids "
                                    "(Cityscapes: road 0); empty: no gating"),
    "gating_dilation": ParameterSpec(0, "integer", "'next to': pixels the gating region grows",
                                     bounds=(0, MAX_DILATION)),
    "publish_score": ParameterSpec(True, "bool", "publish ~/anomaly_score (32FC1)"),
    "publish_mask": ParameterSpec(True, "bool", "publish ~/obstacle_mask (mono8 0/255)"),
    "publish_overlay": ParameterSpec(True, "bool",
                                     "publish ~/overlay (bgr8), rendered only while subscribed"),
    "publish_semantic": ParameterSpec(False, "bool", "publish ~/semantic (mono8 class ids)"),
    "score_resolution": ParameterSpec("frame", "string",
                                      "~/anomaly_score at the camera's size (frame) or the "
                                      "model's input size (model: ~/score_camera_info matches "
                                      "it)", choices=SCORE_SIZES),
    "resize_mode": ParameterSpec("stretch", "string",
                                 "frames to the model's aspect: stretch (whole frame, aspect "
                                 "changes), letterbox (whole frame, zero padding) or crop "
                                 "(centre; unseen pixels score low, mask 0)", read_only=True,
                                 choices=RESIZE_MODES),
    "refine": ParameterSpec("none", "string",
                            "none: the thresholded score is the obstacle mask; s2m: SAM's "
                            "masks of box prompts from the score are", read_only=True,
                            choices=REFINE_MODES),
    "sam_model_path": ParameterSpec("", "string",
                                    "refine s2m: SAM image-encoder graph from `ood-perception "
                                    "export --model sam-...` (its decoder beside it)",
                                    read_only=True),
    "s2m_detector_path": ParameterSpec("", "string",
                                       "refine s2m: S2M's detectron2 box detector checkpoint "
                                       "(empty: box prompts from the score's components)",
                                       read_only=True),
    "s2m_score_scale": ParameterSpec(1.0, "double",
                                     "refine s2m: the detector sees the score times this",
                                     read_only=True, bounds=(1e-6, 1e6)),
    "s2m_max_boxes": ParameterSpec(ProposalConfig.max_boxes, "integer",
                                   "refine s2m: component box prompts per frame",
                                   read_only=True, bounds=(1, 1000)),
    "max_frame_age": ParameterSpec(0.0, "double",
                                   "drop frames older than this many seconds (stamp vs node "
                                   "clock); 0: never"),
    # Bounded to what thread waits and rclpy timers accept.
    "batch_wait": ParameterSpec(0.005, "double",
                                "seconds the worker waits for the other cameras' frames to "
                                "batch them together", bounds=(0.0, 1.0)),
    "diagnostics_period": ParameterSpec(1.0, "double", "seconds between /diagnostics messages",
                                        read_only=True, bounds=(0.01, 3600.0)),
    "min_rate_hz": ParameterSpec(0.0, "double",
                                 "answered frames per second below which a camera is ERROR in "
                                 "/diagnostics (it is also ERROR when stalled); 0: off",
                                 bounds=(0.0, 1000.0)),
    "max_latency_ms": ParameterSpec(0.0, "double",
                                    "latency p90 (node clock - header stamp) above which a "
                                    "camera is WARN in /diagnostics; 0: off",
                                    bounds=(0.0, 600000.0)),
    "base_frame": ParameterSpec("base_link", "string",
                                "vehicle frame whose z = 0 is the ground: ~/obstacle_grid and "
                                "~/obstacle_positions are in it; camera poses from TF or "
                                "camera_extrinsics.<camera> [x, y, z, qx, qy, qz, qw] "
                                "(base_frame <- optical frame)", read_only=True),
    "grid_resolution": ParameterSpec(GridConfig.resolution, "double",
                                     "~/obstacle_grid cell size in metres", read_only=True,
                                     bounds=(0.01, 10.0)),
    "grid_length": ParameterSpec(GridConfig.length, "double",
                                 "~/obstacle_grid metres ahead of base_frame", read_only=True,
                                 bounds=(0.1, 1000.0)),
    "grid_width": ParameterSpec(GridConfig.width, "double",
                                "~/obstacle_grid metres across, centred on base_frame",
                                read_only=True, bounds=(0.1, 1000.0)),
    "track_confirm_frames": ParameterSpec(TrackingConfig.confirm_frames, "integer",
                                          "an obstacle is confirmed once seen in this many "
                                          "of the last track_window frames", read_only=True,
                                          bounds=(1, 1000)),
    "track_window": ParameterSpec(TrackingConfig.window, "integer",
                                  "frames track_confirm_frames counts over", read_only=True,
                                  bounds=(1, 1000)),
    "track_hold_frames": ParameterSpec(TrackingConfig.hold_frames, "integer",
                                       "frames a confirmed obstacle is kept while unseen",
                                       read_only=True, bounds=(0, 1000)),
    "track_min_iou": ParameterSpec(TrackingConfig.min_iou, "double",
                                   "image box IoU at which a detection continues a track",
                                   read_only=True, bounds=(0.0, 1.0)),
    "track_max_distance": ParameterSpec(TrackingConfig.max_distance, "double",
                                        "ground distance (m) within which a detection "
                                        "continues a track", read_only=True,
                                        bounds=(0.0, 100.0)),
    "track_confirmed_only": ParameterSpec(TrackingConfig.confirmed_only, "bool",
                                          "mask, markers, detections and grid show confirmed "
                                          "obstacles only (false: every detection, with its "
                                          "id)", read_only=True),
}
# Per camera, beside PARAMETERS: `camera_extrinsics.<camera name>` = [x, y, z, qx, qy, qz, qw],
# the pose of the camera's optical frame in base_frame (static_transform_publisher's order);
# without it the pose comes from TF where tf2_ros is installed.
EXTRINSICS_PREFIX = "camera_extrinsics."
PUBLISH_SWITCHES = {"anomaly_score": "publish_score", "obstacle_mask": "publish_mask",
                    "overlay": "publish_overlay", "semantic": "publish_semantic"}


def _camera_name(topic: str) -> str:
    """`/front/image_raw` -> `front`: the last path part that is not a standard image suffix."""
    parts = [part for part in topic.strip("/").split("/") if part]
    generic = {"image_raw", "image", "image_rect", "image_rect_color", "image_color",
               "compressed"}
    meaningful = [part for part in parts if part not in generic]
    return (meaningful or parts or ["camera"])[-1]


# The parameters `RefineSettings` holds (refine none: all at their defaults).
REFINE_PARAMETERS = ("refine", "sam_model_path", "s2m_detector_path", "s2m_score_scale",
                     "s2m_max_boxes")


@dataclass(frozen=True)
class RefineSettings:
    """S2M refinement as the node's parameters set it (the runtime opens the refiner)."""

    sam_model_path: str
    detector_path: str  # empty: box prompts from the score's components
    score_scale: float
    max_boxes: int

    def parameter_values(self) -> dict[str, Any]:
        return {"refine": "s2m", "sam_model_path": self.sam_model_path,
                "s2m_detector_path": self.detector_path, "s2m_score_scale": self.score_scale,
                "s2m_max_boxes": self.max_boxes}


def _refine_settings(checked: dict[str, Any]) -> RefineSettings | None:
    """The refine parameters, checked: SAM's graph must exist when refining, and the SAM and
    detector paths mean nothing without it."""
    if checked["refine"] == "none":
        used = [name for name in ("sam_model_path", "s2m_detector_path") if checked[name]]
        if used:
            raise ConfigurationError(f"parameter(s) {', '.join(used)} need refine s2m")
        return None
    if not checked["sam_model_path"]:
        raise ConfigurationError("parameter refine s2m needs sam_model_path (SAM's graphs "
                                 "from `ood-perception export --model sam-vit-b` or mobile-sam)")
    for name in ("sam_model_path", "s2m_detector_path"):
        if checked[name] and not Path(checked[name]).is_file():
            raise ConfigurationError(f"parameter {name}: file not found: {checked[name]}")
    return RefineSettings(sam_model_path=checked["sam_model_path"],
                          detector_path=checked["s2m_detector_path"],
                          score_scale=checked["s2m_score_scale"],
                          max_boxes=checked["s2m_max_boxes"])


# The parameters `GroundSettings` holds.
GROUND_PARAMETERS = ("base_frame", "grid_resolution", "grid_length", "grid_width",
                     "track_confirm_frames", "track_window", "track_hold_frames",
                     "track_min_iou", "track_max_distance", "track_confirmed_only")


@dataclass(frozen=True)
class GroundSettings:
    """Ground projection, grid and tracking as the node's parameters set them."""

    base_frame: str = "base_link"
    grid: GridConfig = field(default_factory=GridConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    @classmethod
    def from_checked(cls, checked: dict[str, Any]) -> GroundSettings:
        if not re.fullmatch(r"[A-Za-z0-9_/]+", checked["base_frame"]):
            raise ConfigurationError(f"parameter base_frame must be a frame id, got "
                                     f"{checked['base_frame']!r}")
        grid = GridConfig(resolution=checked["grid_resolution"], length=checked["grid_length"],
                          width=checked["grid_width"])
        tracking = TrackingConfig(
            confirm_frames=checked["track_confirm_frames"], window=checked["track_window"],
            hold_frames=checked["track_hold_frames"], min_iou=checked["track_min_iou"],
            max_distance=checked["track_max_distance"],
            confirmed_only=checked["track_confirmed_only"])
        return cls(checked["base_frame"], grid, tracking)

    def parameter_values(self) -> dict[str, Any]:
        grid, tracking = self.grid, self.tracking
        return {"base_frame": self.base_frame, "grid_resolution": grid.resolution,
                "grid_length": grid.length, "grid_width": grid.width,
                "track_confirm_frames": tracking.confirm_frames,
                "track_window": tracking.window, "track_hold_frames": tracking.hold_frames,
                "track_min_iou": tracking.min_iou, "track_max_distance": tracking.max_distance,
                "track_confirmed_only": tracking.confirmed_only}


@dataclass(frozen=True)
class NodeConfig:
    """Everything the node needs, validated; `postprocess` is what `ros2 param set` changes."""

    model_path: str
    backend: str
    device: str
    precision: str
    build_only: bool
    image_topics: tuple[str, ...]
    camera_names: tuple[str, ...]
    input_transport: str
    input_qos: str
    postprocess: PostprocessConfig
    publish: dict[str, bool] = field(default_factory=dict)
    max_frame_age: float = 0.0
    batch_wait: float = 0.005
    diagnostics_period: float = 1.0
    # The raw threshold value; NaN means "the model's score_range midpoint".
    score_threshold: float = math.nan
    health: HealthLimits = field(default_factory=HealthLimits)
    score_resolution: str = "frame"
    refine: RefineSettings | None = None
    ground: GroundSettings = field(default_factory=GroundSettings)
    resize_mode: str = "stretch"

    @classmethod
    def from_values(cls, values: dict[str, Any], info: ModelInfo | None = None) -> NodeConfig:
        """Parameter values (missing ones default) -> config, or `ConfigurationError`.

        `info` resolves a NaN threshold from the model's score_range; without it a NaN
        threshold stays a placeholder of 0.5 until the model is loaded.
        """
        unknown = sorted(set(values) - set(PARAMETERS))
        if unknown:
            raise ConfigurationError(f"unknown parameter(s): {', '.join(unknown)}")
        merged = {name: spec.default for name, spec in PARAMETERS.items()} | values
        checked = {name: _checked(name, merged[name]) for name in PARAMETERS}

        if not checked["model_path"]:
            raise ConfigurationError("parameter model_path is required (an exported .onnx model)")
        for name, spec in PARAMETERS.items():
            if spec.choices is not None and checked[name] not in spec.choices:
                raise ConfigurationError(f"parameter {name} must be one of "
                                         f"{', '.join(spec.choices)}, got {checked[name]!r}")
        parse_device(checked["device"], "parameter device")
        allowed = PRECISIONS[checked["backend"]]
        if checked["precision"] and checked["precision"] not in allowed:
            raise ConfigurationError(f"parameter precision must be empty or one of "
                                     f"{', '.join(allowed) or 'nothing'} for backend "
                                     f"{checked['backend']}, got {checked['precision']!r}")
        if checked["build_only"] and checked["backend"] != "tensorrt":
            raise ConfigurationError("parameter build_only applies only to backend tensorrt")
        topics = tuple(checked["image_topics"])
        if not topics or any(not _valid_topic(topic) for topic in topics):
            raise ConfigurationError(f"parameter image_topics must list valid topic names, "
                                     f"got {list(topics)}")
        if len(set(topics)) != len(topics):
            raise ConfigurationError(f"parameter image_topics lists a topic twice: {list(topics)}")
        names = tuple(checked["camera_names"]) or tuple(_camera_name(t) for t in topics)
        if len(names) != len(topics):
            raise ConfigurationError(f"parameter camera_names needs one name per image topic "
                                     f"({len(topics)}), got {len(names)}")
        # One camera publishes on ~/<output>: its name is never used in a topic.
        if len(topics) > 1 and (len(set(names)) != len(names) or any(
                not re.fullmatch(_TOKEN, name) for name in names)):
            raise ConfigurationError(f"camera names must be unique ROS name tokens (ASCII "
                                     f"letters, digits, _), got {list(names)}; set parameter "
                                     "camera_names")
        if not (math.isfinite(checked["max_frame_age"]) and checked["max_frame_age"] >= 0):
            raise ConfigurationError(f"parameter max_frame_age must be >= 0 seconds, "
                                     f"got {checked['max_frame_age']}")
        for name, spec in PARAMETERS.items():
            if spec.bounds is not None and not spec.bounds[0] <= checked[name] <= spec.bounds[1]:
                raise ConfigurationError(f"parameter {name} must be within {spec.bounds[0]:g}.."
                                         f"{spec.bounds[1]:g}, got {checked[name]}")
        try:
            ground = GroundSettings.from_checked(checked)
        except ConfigurationError as error:
            message = str(error)
            raise ConfigurationError(message if message.startswith("parameter") else
                                     f"parameter {message}") from None
        return cls(
            ground=ground,
            score_resolution=checked["score_resolution"], refine=_refine_settings(checked),
            resize_mode=checked["resize_mode"],
            model_path=checked["model_path"], backend=checked["backend"],
            device=checked["device"], precision=checked["precision"],
            build_only=checked["build_only"], image_topics=topics, camera_names=names,
            input_transport=checked["input_transport"], input_qos=checked["input_qos"],
            postprocess=postprocess_config(checked, info),
            publish={output: checked[switch] for output, switch in PUBLISH_SWITCHES.items()},
            max_frame_age=checked["max_frame_age"], batch_wait=checked["batch_wait"],
            diagnostics_period=checked["diagnostics_period"],
            score_threshold=checked["score_threshold"],
            health=HealthLimits(min_rate_hz=checked["min_rate_hz"],
                                max_latency_ms=checked["max_latency_ms"]),
        )

    def with_runtime_values(self, values: dict[str, Any], info: ModelInfo | None) -> NodeConfig:
        """A copy with run-time parameters changed; read-only ones raise `ConfigurationError`."""
        fixed = sorted(name for name in values
                       if name in PARAMETERS and PARAMETERS[name].read_only)
        if fixed:
            raise ConfigurationError(f"{', '.join(fixed)} cannot change at run time; restart")
        current = self.parameter_values() | values
        return NodeConfig.from_values(current, info)

    def parameter_values(self) -> dict[str, Any]:
        """The config as parameter name -> value (round trip of `from_values`)."""
        post = self.postprocess
        return {
            "model_path": self.model_path, "backend": self.backend, "device": self.device,
            "precision": self.precision, "build_only": self.build_only,
            "image_topics": list(self.image_topics), "camera_names": list(self.camera_names),
            "input_transport": self.input_transport, "input_qos": self.input_qos,
            "score_threshold": self.score_threshold,
            "min_obstacle_area": post.min_obstacle_area,
            "gating_classes": list(post.gating_classes),
            "gating_dilation": post.gating_dilation,
            **{switch: self.publish[output] for output, switch in PUBLISH_SWITCHES.items()},
            "max_frame_age": self.max_frame_age, "batch_wait": self.batch_wait,
            "diagnostics_period": self.diagnostics_period,
            "min_rate_hz": self.health.min_rate_hz, "max_latency_ms": self.health.max_latency_ms,
            "score_resolution": self.score_resolution,
            "resize_mode": self.resize_mode,
            **(self.refine.parameter_values() if self.refine else {
                name: PARAMETERS[name].default for name in REFINE_PARAMETERS}),
            **self.ground.parameter_values(),
        }

    def backend_options(self) -> dict[str, Any]:
        """Keyword arguments of `create_backend` for this backend: the batch is the camera
        count (TensorRT's engine profile; torch captures CUDA graphs of 1..cameras at start-up)."""
        options: dict[str, Any] = {"device": self.device}
        if self.precision:
            options["precision"] = self.precision
        if self.backend in BATCH_SIZED:
            options["max_batch"] = len(self.image_topics)
        return options

    def refiner_options(self) -> dict[str, Any]:
        """Keyword arguments of SAM's runner beyond its device: the node's precision and, on
        TensorRT, its batch, so SAM's engines are those `build_engine_request` builds."""
        options: dict[str, Any] = {}
        if self.precision and self.backend != "onnxruntime":
            options["precision"] = self.precision
        if self.backend == "tensorrt":
            options["max_batch"] = len(self.image_topics)
        return options

    def build_engine_request(self) -> dict[str, Any]:
        """Keyword arguments of `backends.tensorrt.build_node_engines`: every engine this node
        opens (the anomaly graph and, refining, SAM's), as `ood-perception build-engine`."""
        device = parse_device(self.device, "parameter device")
        if not device.is_cuda:
            raise ConfigurationError(f"backend 'tensorrt' runs on cuda, not {self.device!r}")
        return {"model_path": self.model_path, "precision": self.precision or "fp16",
                "cameras": len(self.image_topics), "device": device.index or 0,
                "sam_model_path": self.refine.sam_model_path if self.refine else None}

    def input_topic(self, index: int) -> str:
        """The topic subscribed for camera `index` (`<topic>/compressed` for compressed)."""
        return self.transport_topic(self.image_topics[index])

    def transport_topic(self, image_topic: str) -> str:
        """What carries `image_topic`'s images: itself, or `<topic>/compressed`."""
        if self.input_transport == "compressed":
            return f"{image_topic.rstrip('/')}/compressed"
        return image_topic

    def output_topic(self, index: int, output: str) -> str:
        """`~/<output>` for one camera, `~/<camera>/<output>` for several."""
        if len(self.image_topics) == 1:
            return f"~/{output}"
        return f"~/{self.camera_names[index]}/{output}"

    def camera_info_topic(self, index: int) -> str:
        """The camera's `camera_info`, beside its image topic (image_transport's rule)."""
        return camera_info_beside(self.image_topics[index])


def camera_info_beside(image_topic: str) -> str:
    """`/front/image_raw` -> `/front/camera_info` (image_transport's rule)."""
    parent, slash, _ = image_topic.rpartition("/")
    return f"{parent}{slash}camera_info"


def resolved_threshold(threshold: float, info: ModelInfo | None,
                       how_to_set: str = "set parameter score_threshold") -> float:
    """NaN -> the midpoint of the model's score_range; an explicit value passes through.
    Every tool resolves it here, so the node, `run` and `replay` threshold alike."""
    if not math.isnan(threshold):
        return threshold
    if info is None:
        return 0.5
    if info.score_range is None:
        raise ConfigurationError(f"model {info.model_name!r} has no score_range metadata; "
                                 f"{how_to_set}")
    low, high = info.score_range
    return (low + high) / 2.0


def postprocess_config(values: dict[str, Any], info: ModelInfo | None,
                       how_to_set: str = "set parameter score_threshold") -> PostprocessConfig:
    """The postprocess part of parameter values (missing ones default), checked as at
    start-up: the node and the tools reading its params files threshold alike."""
    checked = {name: _checked(name, values.get(name, PARAMETERS[name].default))
               for name in ("score_threshold", "min_obstacle_area", "gating_classes",
                            "gating_dilation")}
    threshold = resolved_threshold(checked["score_threshold"], info, how_to_set)
    gating = tuple(checked["gating_classes"])
    if gating and info is not None:
        _check_gating(gating, info)
    try:
        return PostprocessConfig(
            score_threshold=threshold, min_obstacle_area=checked["min_obstacle_area"],
            gating_classes=gating, gating_dilation=checked["gating_dilation"])
    except ConfigurationError as error:  # its messages start with the field's name
        raise ConfigurationError(f"parameter {error}") from None


def _check_gating(classes: tuple[int, ...], info: ModelInfo) -> None:
    """Gating on classes the model cannot output would silently suppress every obstacle."""
    unknown = [c for c in classes if info.class_names and not 0 <= c < len(info.class_names)]
    if unknown:
        raise ConfigurationError(
            f"parameter gating_classes has class ids {unknown} that model "
            f"{info.model_name!r} does not have (0..{len(info.class_names) - 1})")


def _valid_topic(topic: str) -> bool:
    return isinstance(topic, str) and _TOPIC.fullmatch(topic) is not None


def _checked(name: str, value: Any) -> Any:
    """Type check one value against its spec; integers are accepted for doubles."""
    kind = PARAMETERS[name].kind
    bad = ConfigurationError(f"parameter {name} must be {kind.replace('_', ' ')}, got {value!r}")
    if kind == "double":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise bad
        return value
    element = str if kind == "string_array" else int
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise bad
    items = list(value)
    if any(isinstance(item, bool) or not isinstance(item, element) for item in items):
        raise bad
    return items


def describe(config: NodeConfig) -> str:
    """One line for the start-up log."""
    cameras = ", ".join(f"{name}<-{config.input_topic(i)}"
                        for i, name in enumerate(config.camera_names))
    return (f"backend {config.backend} on {config.device}, cameras {cameras}, "
            f"threshold {config.postprocess.score_threshold:g}, qos {config.input_qos}, score at "
            f"{config.score_resolution} size, resize {config.resize_mode}, refine "
            f"{'s2m' if config.refine else 'none'}")
