"""The runtime flags every model-running command shares (`--backend` with choices, `--device`,
`--precision`), checked before any model loads or Ray cluster starts; build-engine's request
from a node params file."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest

from ood_perception.cli import arguments
from ood_perception.cli.build_engine import node_request
from ood_perception.cli.main import build_parser, main
from ood_perception.errors import ConfigurationError
from ood_perception.fleet import cluster
from ood_perception.ros.params_file import write_params

MODEL_COMMANDS = ("run", "replay", "evaluate", "mine", "calibrate", "benchmark")


def _flags(command: str) -> dict[str, argparse.Action]:
    return {option: action for action in build_parser(command)._actions
            for option in action.option_strings}


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_model_command_takes_the_same_runtime_flags(command: str) -> None:
    flags = _flags(command)
    assert {"--backend", "--device", "--precision"} <= set(flags)
    assert flags["--backend"].choices  # a typo is refused by argparse, naming the choices
    expected = ("torch",) if command == "benchmark" else ("onnxruntime", "tensorrt", "torch")
    assert tuple(flags["--backend"].choices) == expected


def test_build_engine_takes_a_cuda_device_string_and_the_camera_count() -> None:
    flags = _flags("build-engine")
    assert {"--device", "--precision", "--cameras", "--params-file", "--sam"} <= set(flags)
    assert tuple(flags["--precision"].choices) == ("fp16", "fp32")


def _namespace(backend: str = "onnxruntime", device: str | None = None,
               precision: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(backend=backend, device=device, precision=precision)


@pytest.mark.parametrize("flags,message", [
    (("onnxruntime", "gpu0", None), "--device must be cpu, cuda or cuda:N, got 'gpu0'"),
    (("onnxruntime", None, "fp16"), "--backend onnxruntime runs only the graph as exported"),
    (("tensorrt", "cpu", None), "--backend tensorrt runs on cuda, not --device cpu"),
    (("tensorrt", None, "bf16"), "--backend tensorrt runs fp16, fp32; got --precision bf16"),
    (("torch", "cpu", "fp16"), "fp16 needs a CUDA device"),
])
def test_bad_runtime_flags_are_one_clear_error(flags, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        arguments.runtime_options(_namespace(*flags))


def test_options_carry_the_batch_to_tensorrt_and_torch_only() -> None:
    options = arguments.runtime_options(_namespace("tensorrt", "cuda:1", "fp32"), batch=4,
                                        local=False)
    assert options == {"device": "cuda:1", "precision": "fp32", "max_batch": 4}
    assert arguments.runtime_options(_namespace("torch", "cpu"), batch=4) == {
        "device": "cpu", "max_batch": 4}
    assert arguments.runtime_options(_namespace("onnxruntime", "cpu"), batch=4) == {
        "device": "cpu"}


@pytest.mark.skipif(__import__("torch").cuda.device_count() > 7, reason="has a cuda:7")
def test_a_local_cuda_device_this_machine_lacks_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="--device cuda:7: this machine has"):
        arguments.runtime_options(_namespace("onnxruntime", "cuda:7"))


def _image_folder(folder: Path) -> Path:
    folder.mkdir()
    cv2.imwrite(str(folder / "f.png"), np.full((64, 96, 3), 128, np.uint8))
    return folder


def test_run_passes_its_batch_and_flags_to_the_backend(tmp_path: Path, tiny_model_path: Path,
                                                       monkeypatch, capsys) -> None:
    """On TensorRT the engine profile must cover `--batch` frames."""
    from ood_perception.cli import run as cli_run

    seen = {}

    def opened(kind, model, **options):
        seen.update(kind=kind, **options)
        raise ConfigurationError("stop here")

    monkeypatch.setattr(arguments, "_check_cuda_visible", lambda device: None)
    monkeypatch.setattr(cli_run, "create_backend", opened)
    code = main(["run", str(_image_folder(tmp_path / "in")), "--model", str(tiny_model_path),
                 "--output", str(tmp_path / "out"), "--backend", "tensorrt", "--device",
                 "cuda:1", "--precision", "fp32", "--batch", "3"])
    assert code == 2 and "stop here" in capsys.readouterr().err
    assert seen == {"kind": "tensorrt", "device": "cuda:1", "precision": "fp32", "max_batch": 3}


@pytest.mark.parametrize("backend,device,expected", [
    ("tensorrt", "cuda:1", {"max_batch": 3}),
    ("torch", "cpu", {"max_batch": 3}),
    ("onnxruntime", "cpu", {}),  # no start-up sized for a batch
])
def test_mine_passes_its_batch_size_to_the_backend(backend, device, expected, tmp_path: Path,
                                                   tiny_model_path: Path, monkeypatch,
                                                   capsys) -> None:
    """A worker's backend is built for `--batch-size` frames per call, as `run --batch`."""
    import ood_perception.backends as backends
    from ood_perception.fleet import inputs as fleet_inputs
    from ood_perception.fleet import mine as fleet_mine

    specs, seen = [], {}

    def mined(bags, spec, *rest):
        specs.append(spec)
        raise ConfigurationError("stop here")

    def opened(kind, model, **options):
        seen.update(kind=kind, **options)
        raise ConfigurationError("opened")

    monkeypatch.setattr(arguments, "_check_cuda_visible", lambda device: None)
    monkeypatch.setattr(fleet_inputs, "expand_bags", lambda bags: [])
    monkeypatch.setattr(fleet_mine, "mine", mined)
    monkeypatch.setattr(backends, "create_backend", opened)
    code = main(["mine", str(tmp_path / "bags"), "--model", str(tiny_model_path), "--out",
                 str(tmp_path / "out"), "--backend", backend, "--device", device,
                 "--batch-size", "3"])
    assert code == 2 and "stop here" in capsys.readouterr().err
    with pytest.raises(ConfigurationError, match="opened"):
        specs[0].build()
    assert seen == {"kind": backend, "device": device, **expected}


def test_run_says_a_missing_threshold_before_the_model_loads(tmp_path: Path, monkeypatch,
                                                             capsys) -> None:
    from tiny_model import export_tiny_model

    from ood_perception.cli import run as cli_run

    model = export_tiny_model(tmp_path / "bare.onnx", with_metadata=False)
    monkeypatch.setattr(cli_run, "create_backend", lambda *a, **k: pytest.fail("model loaded"))
    code = main(["run", str(_image_folder(tmp_path / "in")), "--model", str(model),
                 "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "--threshold" in err and err.count("\n") == 1


@pytest.fixture
def no_cluster(monkeypatch):
    """Starting or joining a Ray cluster fails the test."""
    monkeypatch.setattr(cluster, "connect", lambda config: pytest.fail("cluster started"))


@pytest.mark.parametrize("command", ["mine", "replay"])
def test_fleet_commands_refuse_bad_flags_before_any_cluster(command: str, tmp_path: Path,
                                                            tiny_model_path: Path, no_cluster,
                                                            capsys) -> None:
    from tiny_model import export_tiny_model

    bags = tmp_path / "bags"
    bags.mkdir()
    out = ["--out", str(tmp_path / "out")]
    base = [command, str(bags), *out, "--ray", "local"]
    code = main([*base, "--model", str(tiny_model_path), "--backend", "onnxruntime",
                 "--precision", "fp16"])
    err = capsys.readouterr().err
    assert code == 2 and "runs only the graph as exported" in err and err.count("\n") == 1
    code = main([*base, "--model", str(tiny_model_path), "--device", "cuda:x"])
    assert code == 2 and "--device must be" in capsys.readouterr().err
    bare = export_tiny_model(tmp_path / "bare.onnx", with_metadata=False)
    code = main([*base, "--model", str(bare)])
    err = capsys.readouterr().err
    assert code == 2 and "score_threshold" in err and err.count("\n") == 1


def test_evaluate_on_ray_refuses_a_bad_device_before_any_cluster(tmp_path: Path, no_cluster,
                                                                 tiny_model_path: Path,
                                                                 capsys) -> None:
    (tmp_path / "data").mkdir()
    code = main(["evaluate", "--model", str(tiny_model_path), "--dataset",
                 str(tmp_path / "data"), "--ray", "local", "--device", "tpu"])
    assert code == 2 and "--device must be" in capsys.readouterr().err


def test_evaluate_refines_with_sam_on_the_backends_runtime_and_device(
        tmp_path: Path, tiny_model_path: Path, tiny_sam, monkeypatch) -> None:
    from ood_perception.core import refine

    opened = {}
    original = refine.open_refiner

    def spy(sam_path, config, backend="onnxruntime", device="cpu", *rest, **options):
        opened.update(backend=backend, device=device, **options)
        return original(sam_path, config, backend, device, *rest, **options)

    monkeypatch.setattr(refine, "open_refiner", spy)
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    (tmp_path / "data" / "labels").mkdir()
    cv2.imwrite(str(images / "f.png"), np.full((64, 96, 3), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "data" / "labels" / "f.png"), np.zeros((64, 96), np.uint8))
    assert main(["evaluate", "--model", str(tiny_model_path), "--dataset",
                 str(tmp_path / "data"), "--refine", "s2m", "--sam", str(tiny_sam.encoder),
                 "--backend", "onnxruntime", "--device", "cpu"]) == 0
    assert opened == {"backend": "onnxruntime", "device": "cpu"}


def test_build_engine_builds_what_the_node_params_ask_for(tmp_path: Path) -> None:
    params = tmp_path / "node.yaml"
    write_params(params, {"model_path": str(tmp_path / "m.onnx"), "image_topics":
                          ["/a/image", "/b/image", "/c/image"], "precision": "fp32",
                          "device": "cuda:1", "refine": "s2m",
                          "sam_model_path": str(tmp_path / "sam.onnx")})
    parser = build_parser("build-engine")
    request = node_request(parser.parse_args(["--params-file", str(params)]))
    assert request == {"model_path": tmp_path / "m.onnx", "precision": "fp32", "cameras": 3,
                       "device": 1, "sam_model_path": tmp_path / "sam.onnx"}
    request = node_request(parser.parse_args(["x.onnx", "--cameras", "2"]))
    assert request == {"model_path": Path("x.onnx"), "precision": "fp16", "cameras": 2,
                       "device": 0, "sam_model_path": None}
    with pytest.raises(ConfigurationError, match="build on cuda, not --device cpu"):
        node_request(parser.parse_args(["x.onnx", "--device", "cpu"]))
    with pytest.raises(ConfigurationError, match="give the ONNX graph"):
        node_request(parser.parse_args([]))
