"""`PARAMETERS` declared on an rclpy node, so `ros2 param list/get/dump/describe` show them all.

The node is created with `automatically_declare_parameters_from_overrides`, so what the
command line and params files set is visible through rclpy's public API: each of our
parameters is then re-declared with its descriptor (the override still applies), and any
other name is a typo. Every parameter holds a value (empty arrays typed as such): rclpy
answers a request for all parameters with nothing when one of them is unset.
"""

from __future__ import annotations

import copy

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from ood_perception.errors import ConfigurationError
from ood_perception.ros.parameters import (
    EXTRINSICS_PREFIX,
    NODE_NAME,
    PARAMETERS,
    ParameterSpec,
)
from ood_perception.ros.qos import QOS_OVERRIDE_PREFIX

# Parameters rclpy declares on every node itself.
RCLPY_PARAMETERS = ("use_sim_time", "start_type_description_service")
# Parameter kind -> the rclpy type of its values (the empty arrays need it spelled out).
ARRAY_TYPES = {"string_array": Parameter.Type.STRING_ARRAY,
               "integer_array": Parameter.Type.INTEGER_ARRAY}


def declare_parameters(node: Node) -> list[str]:
    """Declare `PARAMETERS` with descriptors `ros2 param describe` shows (ranges, choices);
    names nobody declares (typos) raise `ConfigurationError`. Returns the `qos_overrides.*`
    names given, for `qos.check_qos_overrides` once the topics exist."""
    given = node.list_parameters([], 0).names
    unknown = sorted(name for name in given if name not in PARAMETERS
                     and name not in RCLPY_PARAMETERS and not name.startswith(QOS_OVERRIDE_PREFIX)
                     and not name.startswith(EXTRINSICS_PREFIX))  # checked per camera
    if unknown:
        raise ConfigurationError(f"unknown parameter(s) for {NODE_NAME}: {', '.join(unknown)}")
    for name, spec in PARAMETERS.items():
        if node.has_parameter(name):  # declared from an override, with a guessed type
            node.undeclare_parameter(name)
        descriptor = _descriptor(spec)
        if spec.kind in ARRAY_TYPES:
            _declare_array(node, name, ARRAY_TYPES[spec.kind], spec.default, descriptor)
        else:
            node.declare_parameter(name, spec.default, descriptor)
    return [name for name in given if name.startswith(QOS_OVERRIDE_PREFIX)]


def _descriptor(spec: ParameterSpec) -> ParameterDescriptor:
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
    return descriptor


def _declare_array(node: Node, name: str, kind: Parameter.Type, default: list,
                   descriptor: ParameterDescriptor) -> None:
    """Declare an array parameter by its type (rclpy would type an empty default as bytes),
    give it `default` when no override did, then make it read-only where it is."""
    descriptor.type = kind.value
    writable = copy.deepcopy(descriptor)
    writable.read_only = False
    parameter = node.declare_parameter(name, kind, writable)
    if parameter.type_ == Parameter.Type.NOT_SET:
        node.set_parameters([Parameter(name, kind, list(default))])
    if descriptor.read_only:
        node.set_descriptor(name, descriptor)


def declared_values(node: Node) -> dict:
    """The declared parameters' values, by name."""
    return {name: node.get_parameter(name).value for name in PARAMETERS}
