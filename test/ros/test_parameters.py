"""Node parameters -> NodeConfig: defaults, every start-up error, topics, run-time changes."""

from __future__ import annotations

import math

import pytest

from ood_perception.contract import ModelInfo
from ood_perception.errors import ConfigurationError
from ood_perception.ros.parameters import PARAMETERS, NodeConfig, resolved_threshold

INFO = ModelInfo(input_height=64, input_width=96, model_name="m", score_range=(-2.0, 4.0),
                 class_names=("road", "sidewalk", "car"))


def config(**values) -> NodeConfig:
    return NodeConfig.from_values({"model_path": "m.onnx", **values}, INFO)


def test_defaults_and_threshold_from_the_model_score_range():
    node = config()
    assert node.image_topics == ("/camera/image_raw",) and node.camera_names == ("camera",)
    assert node.postprocess.score_threshold == 1.0
    assert node.publish == {"anomaly_score": True, "obstacle_mask": True, "overlay": True,
                            "semantic": False}
    assert config(score_threshold=3).postprocess.score_threshold == 3.0


def test_threshold_needs_a_score_range_or_a_value():
    no_range = ModelInfo(input_height=8, input_width=8, model_name="raw")
    with pytest.raises(ConfigurationError, match="^model 'raw' has no score_range .* set "
                       "parameter score_threshold$"):
        NodeConfig.from_values({"model_path": "m.onnx"}, no_range)
    assert resolved_threshold(0.25, no_range) == 0.25


def test_a_single_camera_may_sit_in_the_private_namespace():
    """Its name is never used in a topic, so `~` (the derived name) is no error."""
    assert config(image_topics=["~/image_raw"]).input_topic(0) == "~/image_raw"


@pytest.mark.parametrize("values,message", [
    ({"model_path": ""}, "model_path is required"),
    ({"backend": "caffe"}, "backend must be one of"),
    ({"input_transport": "theora"}, "input_transport"),
    ({"input_qos": "fast"}, "input_qos"),
    ({"score_threshold": "high"}, "score_threshold must be double"),
    ({"score_threshold": math.inf}, "score_threshold"),
    ({"min_obstacle_area": -1}, "min_obstacle_area"),
    ({"min_obstacle_area": 1.5}, "min_obstacle_area must be integer"),
    ({"gating_classes": [0, 300]}, "gating_classes"),
    ({"image_topics": []}, "image_topics"),
    ({"image_topics": ["/a/image_raw", "/a/image_raw"]}, "twice"),
    ({"image_topics": ["bad topic"]}, "image_topics"),
    ({"image_topics": ["/cam/1/image_raw"]}, "image_topics"),  # tokens cannot start with 0-9
    ({"image_topics": ["/kaméra/image_raw"]}, "image_topics"),
    ({"image_topics": ["/a/image_raw/"]}, "image_topics"),
    ({"image_topics": ["/a/image_raw", "/b/image_raw"], "camera_names": ["kaméra", "b"]},
     "ASCII"),
    ({"gating_classes": [3]}, "class ids \\[3\\] that model 'm' does not have \\(0..2\\)"),
    ({"batch_wait": 1e10}, "batch_wait must be within 0..1"),
    ({"image_topics": ["/a/image_raw", "/b/image_raw"], "camera_names": ["a"]}, "one name"),
    ({"image_topics": ["/a/left/image_raw", "/b/left/image_raw"]}, "camera_names"),
    ({"max_frame_age": -0.1}, "max_frame_age"),
    ({"diagnostics_period": 0.0}, "diagnostics_period"),
    ({"diagnostics_period": 1e-10}, "diagnostics_period must be within 0.01..3600"),
    ({"diagnostics_period": 1e10}, "diagnostics_period"),
    ({"publish_overlay": "yes"}, "publish_overlay must be bool"),
    ({"score_treshold": 0.5}, "unknown parameter"),
])
def test_bad_values_raise_one_clear_error(values, message):
    with pytest.raises(ConfigurationError, match=message):
        config(**values)


def test_one_camera_publishes_in_the_node_namespace_several_under_their_names():
    one = config(input_transport="compressed")
    assert one.input_topic(0) == "/camera/image_raw/compressed"
    assert one.output_topic(0, "anomaly_score") == "~/anomaly_score"
    two = config(image_topics=["/front/image_raw", "/rear/image_rect"])
    assert two.camera_names == ("front", "rear")
    assert two.output_topic(1, "obstacle_mask") == "~/rear/obstacle_mask"
    named = config(image_topics=["/a/left/image_raw", "/b/left/image_raw"],
                   camera_names=["a_left", "b_left"])
    assert named.output_topic(0, "overlay") == "~/a_left/overlay"


def test_runtime_changes_keep_the_rest_and_reject_read_only_parameters():
    node = config(min_obstacle_area=7)
    changed = node.with_runtime_values({"score_threshold": 0.1, "publish_mask": False}, INFO)
    assert changed.postprocess.score_threshold == 0.1
    assert changed.postprocess.min_obstacle_area == 7
    assert changed.publish["obstacle_mask"] is False
    with pytest.raises(ConfigurationError, match="restart"):
        node.with_runtime_values({"backend": "torch"}, INFO)
    with pytest.raises(ConfigurationError, match="min_obstacle_area"):
        node.with_runtime_values({"min_obstacle_area": -5}, INFO)


def test_parameter_values_round_trip():
    node = config(gating_classes=[0, 1], gating_dilation=5, score_threshold=0.3)
    again = NodeConfig.from_values(node.parameter_values(), INFO)
    assert again == node
    assert set(node.parameter_values()) == set(PARAMETERS)


def test_backend_options_per_runtime():
    assert config().backend_options() == {"device": "cpu"}
    trt = config(backend="tensorrt", device="cuda", precision="fp32", build_only=True,
                 image_topics=["/a/image_raw", "/b/image_raw"])
    assert trt.backend_options() == {"device": "cuda", "precision": "fp32", "max_batch": 2}
    # torch captures the CUDA graphs of batches 1..cameras at start-up
    torch = config(backend="torch", image_topics=["/a/image", "/b/image", "/c/image"])
    assert torch.backend_options() == {"device": "cpu", "max_batch": 3}
    with pytest.raises(ConfigurationError, match="precision"):
        config(backend="onnxruntime", precision="fp16")
    with pytest.raises(ConfigurationError, match="precision"):
        config(backend="tensorrt", precision="bf16")
    with pytest.raises(ConfigurationError, match="build_only"):
        config(build_only=True)


def test_resize_mode_defaults_to_stretch_and_is_checked():
    assert config().resize_mode == "stretch"
    assert config(resize_mode="letterbox").parameter_values()["resize_mode"] == "letterbox"
    assert PARAMETERS["resize_mode"].read_only
    with pytest.raises(ConfigurationError, match="resize_mode must be one of"):
        config(resize_mode="fit")


def test_refiner_options_match_the_anomaly_backend(tmp_path):
    sam = tmp_path / "sam.onnx"
    sam.write_bytes(b"graph")
    cameras = {"image_topics": ["/a/image", "/b/image"], "refine": "s2m",
               "sam_model_path": str(sam)}
    trt = config(backend="tensorrt", device="cuda:1", precision="fp32", **cameras)
    assert trt.refiner_options() == {"precision": "fp32", "max_batch": 2}
    assert config(backend="tensorrt", device="cuda", **cameras).refiner_options() == {
        "max_batch": 2}
    assert config(backend="torch", precision="bf16", **cameras).refiner_options() == {
        "precision": "bf16"}
    assert config(**cameras).refiner_options() == {}


def test_build_only_requests_every_engine_the_node_opens(tmp_path):
    sam = tmp_path / "sam.onnx"
    sam.write_bytes(b"graph")
    three = ["/a/image", "/b/image", "/c/image"]
    node = config(backend="tensorrt", device="cuda:1", build_only=True, image_topics=three,
                  refine="s2m", sam_model_path=str(sam))
    assert node.build_engine_request() == {"model_path": "m.onnx", "precision": "fp16",
                                           "cameras": 3, "device": 1,
                                           "sam_model_path": str(sam)}
    plain = config(backend="tensorrt", device="cuda", precision="fp32", build_only=True)
    assert plain.build_engine_request() == {"model_path": "m.onnx", "precision": "fp32",
                                            "cameras": 1, "device": 0, "sam_model_path": None}
    with pytest.raises(ConfigurationError, match="runs on cuda, not 'cpu'"):
        config(backend="tensorrt", build_only=True).build_engine_request()


def test_camera_info_sits_beside_each_image_topic():
    node = config(image_topics=["/front/image_raw", "/image", "~/rear/image_rect", "side"],
                  camera_names=["front", "top", "rear", "side"])
    assert [node.camera_info_topic(i) for i in range(4)] == [
        "/front/camera_info", "/camera_info", "~/rear/camera_info", "camera_info"]
    compressed = config(image_topics=["/front/image_raw"], input_transport="compressed")
    assert compressed.camera_info_topic(0) == "/front/camera_info"


def test_health_limits_and_described_constraints():
    node = config(min_rate_hz=5.0, max_latency_ms=150)
    assert (node.health.min_rate_hz, node.health.max_latency_ms) == (5.0, 150.0)
    assert node.with_runtime_values({"min_rate_hz": 0.0}, INFO).health.min_rate_hz == 0.0
    assert PARAMETERS["input_qos"].choices == ("sensor_data", "reliable")
    assert PARAMETERS["backend"].choices == ("onnxruntime", "tensorrt", "torch")
    assert PARAMETERS["min_obstacle_area"].bounds[0] == 0
    with pytest.raises(ConfigurationError, match="min_rate_hz must be within 0..1000"):
        config(min_rate_hz=-1.0)
    with pytest.raises(ConfigurationError, match="gating_dilation must be within"):
        config(gating_dilation=10**6)


def test_ground_and_tracking_parameters_build_their_configs_and_round_trip():
    config = NodeConfig.from_values({"model_path": "m.onnx", "base_frame": "vehicle",
                                     "grid_resolution": 0.5, "grid_length": 40.0,
                                     "track_confirm_frames": 2, "track_window": 4,
                                     "track_confirmed_only": True})
    ground = config.ground
    assert ground.base_frame == "vehicle" and ground.grid.shape == (40, 80)
    assert (ground.tracking.confirm_frames, ground.tracking.window) == (2, 4)
    assert ground.tracking.confirmed_only and ground.tracking.hold_frames == 6
    assert NodeConfig.from_values(config.parameter_values()) == config
    changed = config.with_runtime_values({"score_threshold": 0.7}, None)
    assert changed.ground == ground  # a run-time change keeps the read-only ground settings


@pytest.mark.parametrize("values, message", [
    ({"track_confirm_frames": 6, "track_window": 5}, "parameter track_confirm_frames"),
    ({"base_frame": "base link"}, "parameter base_frame"),
    ({"grid_resolution": 0.01, "grid_length": 1000.0, "grid_width": 1000.0}, "grid_"),
])
def test_bad_ground_parameters_name_themselves(values, message):
    with pytest.raises(ConfigurationError, match=message):
        NodeConfig.from_values({"model_path": "m.onnx", **values})


def test_params_files_give_the_offline_tools_the_same_tracking_and_poses(tmp_path):
    import yaml

    from ood_perception.ros.params_file import ground_from_params

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "image_topics": ["/front/image_raw", "/rear/image_raw"], "track_hold_frames": 2,
        "camera_extrinsics": {"rear": [-1.0, 0.0, 1.2, 0.5, 0.5, 0.5, 0.5]}}}}))
    settings, poses = ground_from_params(path)
    assert settings.tracking.hold_frames == 2 and list(poses) == ["/rear/image_raw"]
    assert poses["/rear/image_raw"].translation == (-1.0, 0.0, 1.2)
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "camera_extrinsics.side": [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]}}}))
    with pytest.raises(ConfigurationError, match="side"):
        ground_from_params(path)
    assert ground_from_params(None)[1] == {}
