"""The one device-string parser, and the places that must use it."""

from __future__ import annotations

import pytest

from ood_perception.backends.device import Device, parse_device
from ood_perception.errors import ConfigurationError
from ood_perception.ros.parameters import NodeConfig


@pytest.mark.parametrize(("text", "expected"), [
    ("cpu", Device("cpu")), ("cuda", Device("cuda")), ("cuda:0", Device("cuda", 0)),
    ("cuda:12", Device("cuda", 12))])
def test_valid_devices_parse_and_print_back(text, expected):
    assert parse_device(text) == expected
    assert str(parse_device(text)) == text


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "cpu:0", "CUDA", " cuda", "", None])
def test_bad_devices_name_what_to_write(text):
    with pytest.raises(ConfigurationError, match="cpu, cuda or cuda:N"):
        parse_device(text)


def test_node_config_refuses_a_bad_device_before_any_model_loads():
    with pytest.raises(ConfigurationError, match="parameter device must be cpu, cuda or cuda:N"):
        NodeConfig.from_values({"model_path": "m.onnx", "backend": "tensorrt", "device": "cuda:x"})
