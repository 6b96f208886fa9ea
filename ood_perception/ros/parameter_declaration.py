"""`PARAMETERS` declared on an rclpy node, so `ros2 param list/get/dump/describe` show them all.

The node is created with `automatically_declare_parameters_from_overrides`, so what the
command line and params files set is visible through rclpy's public API: each of our
parameters is then re-declared with its descriptor and the value given, and any other name
is a typo. Every parameter holds a value (empty arrays typed as such): rclpy answers a
request for all parameters with nothing when one of them is unset.
"""

from __future__ import annotations

import array
import copy
import math
from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from ood_perception.contract import ModelInfo
from ood_perception.errors import ConfigurationError
from ood_perception.ros.parameters import (
    EXTRINSICS_PREFIX,
    NODE_NAME,
    PARAMETERS,
    ParameterSpec,
    resolved_threshold,
)
from ood_perception.ros.qos import QOS_OVERRIDE_PREFIX

# Parameters rclpy declares on every node itself.
RCLPY_PARAMETERS = ("use_sim_time", "start_type_description_service")
# Parameter kind -> the rclpy type of its values (the empty arrays need it spelled out).
ARRAY_TYPES = {"string_array": Parameter.Type.STRING_ARRAY,
               "integer_array": Parameter.Type.INTEGER_ARRAY}


def declare_overrides(init: Callable[..., None], name: str, options: dict) -> None:
    """Run a node class's `__init__` with every override declared as it was given (what
    `declare_parameters` then reads); an override without a value (an empty YAML list) is a
    `ConfigurationError`."""
    try:
        init(name, automatically_declare_parameters_from_overrides=True, **options)
    except ValueError as error:  # rclpy cannot declare a value of type NOT_SET
        raise ConfigurationError(f"a parameter given without a value ({error}): leave out an "
                                 "empty list, lists default to empty") from None


def declare_parameters(node: Node) -> list[str]:
    """Declare `PARAMETERS` with descriptors `ros2 param describe` shows (ranges, choices)
    and the values given at start-up (integers for doubles as doubles); names nobody
    declares (typos) raise `ConfigurationError`. Returns the `qos_overrides.*` names given,
    for `qos.check_qos_overrides` once the topics exist."""
    given = node.list_parameters([], 0).names
    unknown = sorted(name for name in given if name not in PARAMETERS
                     and name not in RCLPY_PARAMETERS and not name.startswith(QOS_OVERRIDE_PREFIX)
                     and not name.startswith(EXTRINSICS_PREFIX))  # checked per camera
    if unknown:
        raise ConfigurationError(f"unknown parameter(s) for {NODE_NAME}: {', '.join(unknown)}")
    for name, spec in PARAMETERS.items():
        value = spec.default
        if node.has_parameter(name):  # declared from an override, with a guessed type
            value = as_declared(spec, node.get_parameter(name).value)
            node.undeclare_parameter(name)
        descriptor = _descriptor(spec)
        if spec.kind in ARRAY_TYPES:
            _declare_array(node, name, ARRAY_TYPES[spec.kind], value, descriptor)
        else:
            node.declare_parameter(name, value, descriptor, ignore_override=True)
    return [name for name in given if name.startswith(QOS_OVERRIDE_PREFIX)]


def as_declared(spec: ParameterSpec, value: Any) -> Any:
    """An integer given for a double parameter, as the double (`ros2 param set x 1` and
    YAML's `1` send integers); anything else as it is, for rclpy's type check."""
    if spec.kind == "double" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def before_set(parameters: list[Parameter], info: ModelInfo | None) -> list[Parameter]:
    """The node's pre-set callback: integers set on double parameters become doubles, so the
    parameter keeps its type; with a model loaded (`info`), a NaN threshold becomes the
    threshold it stands for, so `ros2 param get` shows the one in use."""
    changed = []
    for parameter in parameters:
        spec = PARAMETERS.get(parameter.name)
        if spec is not None and spec.kind == "double" \
                and parameter.type_ == Parameter.Type.INTEGER:
            parameter = Parameter(parameter.name, Parameter.Type.DOUBLE,
                                  as_declared(spec, parameter.value))
        if parameter.name == "score_threshold" and info is not None \
                and parameter.type_ == Parameter.Type.DOUBLE and math.isnan(parameter.value):
            parameter = Parameter(parameter.name, Parameter.Type.DOUBLE,
                                  resolved_threshold(parameter.value, info))
        changed.append(parameter)
    return changed


def _descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.bounds is not None and spec.kind == "double":
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(spec.bounds[0]), to_value=float(spec.bounds[1]), step=0.0)]
    elif spec.bounds is not None:
        descriptor.integer_range = [IntegerRange(
            from_value=int(spec.bounds[0]), to_value=int(spec.bounds[1]), step=1)]
    if spec.choices is not None:
        descriptor.additional_constraints = f"one of: {', '.join(spec.choices)}"
    return descriptor


def _declare_array(node: Node, name: str, kind: Parameter.Type, value: list,
                   descriptor: ParameterDescriptor) -> None:
    """Declare an array parameter by its type (rclpy would type an empty list as bytes), set
    `value`, then make it read-only where it is."""
    items = list(value) if isinstance(value, (list, tuple, array.array)) else None
    if items is None or not kind.check(items):
        raise ConfigurationError(f"parameter {name} must be a {kind.name.lower()}, got {value!r}")
    descriptor.type = kind.value
    writable = copy.deepcopy(descriptor)
    writable.read_only = False
    node.declare_parameter(name, kind, writable, ignore_override=True)
    node.set_parameters([Parameter(name, kind, items)])
    if descriptor.read_only:
        node.set_descriptor(name, descriptor)


def declared_values(node: Node) -> dict:
    """The declared parameters' values, by name."""
    return {name: node.get_parameter(name).value for name in PARAMETERS}
