"""The TensorRT engine cache: keys computed from the real files (graph, external data,
profile), engine and key in one atomically written file. Only the builder is a stand-in
(no TensorRT here); it counts builds, so a stale engine must show up as a second build."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ood_perception.backends import tensorrt_cache
from ood_perception.backends.tensorrt import build_contract_engine, build_node_engines
from ood_perception.backends.tensorrt_cache import (
    MAGIC,
    EngineKey,
    configure_precision,
    contract_profile,
    engine_key,
    engine_path_for,
    graph_files,
    read_engine,
    timing_cache_path_for,
    write_atomically,
    write_engine,
)
from ood_perception.errors import ConfigurationError


class FakeBuilderTensorRT:
    """The `tensorrt` calls of `build_engine`'s builder; each build returns b"engine-<n>" and
    records its optimisation profile."""

    __version__ = "10.3.0"

    def __init__(self):
        self.builds: list[dict] = []
        outer = self

        class Network:
            def __init__(self):
                self.inputs: list[str] = []
                self.num_layers = 0

            @property
            def num_inputs(self):
                return len(self.inputs)

            def get_input(self, index):
                return SimpleNamespace(name=self.inputs[index])

        class Parser:
            def __init__(self, network, logger):
                self.network = network
                self.num_errors = 0

            def parse_from_file(self, path):
                graph = onnx.load(path, load_external_data=False).graph
                self.network.inputs = [value.name for value in graph.input]
                return True

        class Profile(dict):
            def set_shape(self, name, low, opt, high):
                self[name] = (low, opt, high)

        class Config:
            def __init__(self):
                self.profiles = []

            def set_memory_pool_limit(self, pool, size):
                pass

            def set_flag(self, flag):
                pass

            def clear_flag(self, flag):
                pass

            def create_timing_cache(self, data):
                return SimpleNamespace(serialize=lambda: b"timings")

            def set_timing_cache(self, cache, ignore_mismatch):
                return True

            def get_timing_cache(self):
                return SimpleNamespace(serialize=lambda: b"timings")

            def add_optimization_profile(self, profile):
                self.profiles.append(profile)

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                outer.builds.append(dict(config.profiles[0]))
                return f"engine-{len(outer.builds)}".encode()

        class Logger:
            WARNING = 2

            def __init__(self, severity):
                pass

        self.Builder, self.OnnxParser, self.Logger = Builder, Parser, Logger
        self.MemoryPoolType = SimpleNamespace(WORKSPACE="workspace")
        self.BuilderFlag = SimpleNamespace(FP16="FP16", TF32="TF32",
                                           PREFER_PRECISION_CONSTRAINTS="PREFER")
        self.LayerType = SimpleNamespace(NORMALIZATION=1, SOFTMAX=2, REDUCE=3)
        self.float32, self.float16 = "FLOAT", "HALF"


@pytest.fixture
def fake_trt(monkeypatch):
    """The stand-in builder, and an H100 as the GPU."""
    trt = FakeBuilderTensorRT()
    monkeypatch.setattr(tensorrt_cache, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(tensorrt_cache, "gpu_identity", lambda device: ("NVIDIA H100", "9.0"))
    return trt


def _graph_with_external_data(folder: Path) -> Path:
    """uint8 image [B, 4, 6, 3] -> score = mean over channels of Cast(image) + weight, the
    weight stored in `m.onnx.data`."""
    weight = numpy_helper.from_array(np.arange(3, dtype=np.float32), "weight")
    graph = helper.make_graph(
        [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["f", "weight"], ["g"]),
         helper.make_node("ReduceMean", ["g"], ["anomaly_score"], axes=[3], keepdims=0)],
        "g", [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 4, 6, 3])],
        [helper.make_tensor_value_info("anomaly_score", TensorProto.FLOAT, ["batch", 4, 6])],
        [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "m.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.onnx.data", size_threshold=0)
    return path


def test_the_graph_files_include_its_external_data(tmp_path: Path) -> None:
    path = _graph_with_external_data(tmp_path)
    assert graph_files(path) == [path, tmp_path / "m.onnx.data"]
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(ConfigurationError, match="external data that is missing"):
        graph_files(path)


def test_the_contract_profile_is_one_to_max_batch_frames(tmp_path: Path) -> None:
    path = _graph_with_external_data(tmp_path)
    assert contract_profile(path, 4) == {"image": ((1, 4, 6, 3), (4, 4, 6, 3), (4, 4, 6, 3))}
    with pytest.raises(ConfigurationError, match="max batch must be an integer >= 1"):
        contract_profile(path, 0)


def test_changing_the_external_data_or_the_batch_rebuilds(tmp_path: Path, fake_trt,
                                                            caplog) -> None:
    path = _graph_with_external_data(tmp_path)
    engine = build_contract_engine(path, "fp16", max_batch=2)
    assert engine == tmp_path / "m.fp16.engine" and len(fake_trt.builds) == 1
    assert fake_trt.builds[0]["image"][2] == (2, 4, 6, 3)
    build_contract_engine(path, "fp16", max_batch=2)
    assert len(fake_trt.builds) == 1  # cached: same files, profile, TensorRT and GPU

    data = tmp_path / "m.onnx.data"
    changed = bytearray(data.read_bytes())
    changed[0] ^= 0xFF  # new weights, same graph file
    data.write_bytes(bytes(changed))
    with caplog.at_level("WARNING"):
        build_contract_engine(path, "fp16", max_batch=2)
    assert len(fake_trt.builds) == 2
    assert "external_data_sha256 'm.onnx.data=" in caplog.text

    caplog.clear()
    with caplog.at_level("WARNING"):
        build_contract_engine(path, "fp16", max_batch=3)  # a third camera
    assert len(fake_trt.builds) == 3 and fake_trt.builds[2]["image"][2] == (3, 4, 6, 3)
    assert "profile" in caplog.text and "onnx_sha256" not in caplog.text
    assert read_engine(engine, _key(path, 3))[0] == b"engine-3"


def _key(path: Path, batch: int, **changes) -> EngineKey:
    key = engine_key(path, "fp16", contract_profile(path, batch), "10.3.0", "NVIDIA H100", "9.0")
    return replace(key, **changes)


def test_engine_and_key_are_one_file(tmp_path: Path) -> None:
    path = _graph_with_external_data(tmp_path)
    key = _key(path, 1)
    engine = engine_path_for(path, "fp16")
    write_engine(engine, key, b"serialized")
    assert engine.read_bytes().startswith(MAGIC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.fp16.engine", "m.onnx",
                                                          "m.onnx.data"]
    assert read_engine(engine, key) == (b"serialized", f"cached engine {engine} matches")
    for other in (replace(key, tensorrt_version="10.5.0"), replace(key, gpu_name="Orin",
                                                                   compute_capability="8.7"),
                  replace(key, precision="fp32")):
        found, reason = read_engine(engine, other)
        assert found is None and "stale" in reason
    found, reason = read_engine(engine, replace(key, gpu_name="Orin"))
    assert "gpu_name 'NVIDIA H100' -> 'Orin'" in reason and "precision" not in reason


def test_an_engine_without_its_header_is_rebuilt(tmp_path: Path) -> None:
    """Engines cached by older versions (bare engine + .json key) or by hand."""
    path = _graph_with_external_data(tmp_path)
    engine = engine_path_for(path, "fp16")
    engine.write_bytes(b"bare engine")
    found, reason = read_engine(engine, _key(path, 1))
    assert found is None and "not an engine written by this package" in reason
    header = json.dumps({"onnx_sha256": "x"}).encode()
    engine.write_bytes(MAGIC + len(header).to_bytes(8, "little") + header + b"engine")
    found, reason = read_engine(engine, _key(path, 1))
    assert found is None and "unreadable engine key" in reason


def test_sam_encoder_and_decoder_engines_are_built_ahead(tiny_sam, fake_trt) -> None:
    """What a node with 3 cameras and S2M opens: the anomaly graph, SAM's encoder and its
    decoder, each at batch 3."""
    from tiny_model import export_tiny_model

    assert tiny_sam.rc == 0, tiny_sam.stdout
    model = export_tiny_model(tiny_sam.encoder.parent / "tiny.onnx")
    paths = build_node_engines(model, "fp32", cameras=3, sam_model_path=tiny_sam.encoder,
                               max_boxes=16)
    assert [path.name for path in paths] == ["tiny.fp32.engine", "sam.fp32.engine",
                                             "sam.decoder.fp32.engine"]
    image, encoder, decoder = fake_trt.builds
    assert image["image"][2] == (3, 64, 96, 3) and encoder["image"][2] == (3, 64, 96, 3)
    assert decoder["image_embeddings"][2] == (3, 256, 4, 4)
    assert decoder["boxes"][2] == (16, 4)
    build_node_engines(model, "fp32", cameras=3, sam_model_path=tiny_sam.encoder,
                       max_boxes=16)
    assert len(fake_trt.builds) == 3  # all three cached


def test_timing_cache_is_per_tensorrt_version_and_gpu_architecture(tmp_path: Path) -> None:
    path = _graph_with_external_data(tmp_path)
    key = _key(path, 1)
    assert timing_cache_path_for(path, key) == tmp_path / "m.trt10.3.0.sm90.timing_cache"
    orin = replace(key, gpu_name="Orin", compute_capability="8.7")
    assert timing_cache_path_for(path, orin) != timing_cache_path_for(path, key)


def test_write_atomically_replaces_the_file_and_leaves_no_partial(tmp_path: Path) -> None:
    path = tmp_path / "m.fp16.engine"
    path.write_bytes(b"old")
    write_atomically(path, b"new engine")
    assert path.read_bytes() == b"new engine"
    assert [p.name for p in tmp_path.iterdir()] == ["m.fp16.engine"]


class RecordingConfig:
    """The two BuilderConfig calls `configure_precision` makes, recorded."""

    def __init__(self):
        self.flags = {"TF32"}

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)


def test_fp32_engines_turn_tf32_off() -> None:
    """TensorRT enables TF32 by default; fp32 must mean FP32 for the parity tolerance."""
    trt = SimpleNamespace(__version__="10.3.0", BuilderFlag=SimpleNamespace(
        FP16="FP16", TF32="TF32", PREFER_PRECISION_CONSTRAINTS="PREFER"))
    config = RecordingConfig()
    configure_precision(trt, config, network=None, precision="fp32")
    assert config.flags == set()


def test_fp16_on_tensorrt_11_is_one_clear_configuration_error() -> None:
    """TensorRT 11 removed BuilderFlag.FP16 and per-layer precisions (strong typing only)."""
    trt = SimpleNamespace(__version__="11.0.0", BuilderFlag=SimpleNamespace(TF32="TF32"))
    with pytest.raises(ConfigurationError, match="use --precision fp32, or TensorRT 10"):
        configure_precision(trt, RecordingConfig(), network=None, precision="fp16")
