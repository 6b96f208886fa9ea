"""TensorRT's uint8 rules checked on an ONNX graph, so a graph the vehicle's TensorRT would
refuse is refused at export, on any machine.

The rules, each from TensorRT's own documentation or maintainers:
- onnx-tensorrt `docs/operators.md`: "UINT8 is only supported as network input or output tensor
  types" (no uint8 intermediate tensor, constant or initializer).
- NVIDIA/TensorRT issue 3985 (maintainer): every uint8 network input must feed a Cast layer
  directly; no other layer takes uint8, not even data movement (Reshape, Transpose, Shape).
- TensorRT `IIdentityLayer` / Cast conversions: the only uint8 conversions are
  (float32 | float16) -> uint8 and uint8 -> (float32 | float16).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ood_perception.errors import ConfigurationError

_UINT8 = 2  # onnx.TensorProto.UINT8
_FLOATS = {1: "float32", 10: "float16"}  # onnx.TensorProto.FLOAT, FLOAT16
_OPERATORS_MD = "onnx-tensorrt docs/operators.md: UINT8 only as network input or output"
_CAST_INPUTS = "TensorRT (NVIDIA/TensorRT#3985): a uint8 network input feeds only Casts"
_CONVERSIONS = "TensorRT IIdentityLayer/Cast: uint8 converts only from/to float32 or float16"


def _subgraphs(node) -> Iterator:
    for attribute in node.attribute:
        if attribute.g.ByteSize():
            yield attribute.g
        yield from attribute.graphs


def _walk(graph) -> Iterator:
    """Every node of `graph` and of its subgraphs (Scan, Loop, If bodies)."""
    for node in graph.node:
        yield node
        for sub in _subgraphs(node):
            yield from _walk(sub)


def _element_types(model) -> dict[str, int]:
    """Tensor name -> ONNX element type, over the main graph and its subgraphs."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    types: dict[str, int] = {}

    def visit(graph) -> None:
        for value in (*graph.input, *graph.output, *graph.value_info):
            if value.type.HasField("tensor_type"):
                types[value.name] = value.type.tensor_type.elem_type
        for initializer in graph.initializer:
            types[initializer.name] = initializer.data_type
        for node in graph.node:
            if node.op_type == "Constant":
                for attribute in node.attribute:
                    if attribute.name == "value":
                        types[node.output[0]] = attribute.t.data_type
            for sub in _subgraphs(node):
                visit(sub)

    visit(inferred.graph)
    return types


def uint8_rule_violations(model) -> list[str]:
    """What in the ONNX `model` (a `ModelProto`) breaks TensorRT's uint8 rules, one line
    each with its source; empty when the graph follows them."""
    types = _element_types(model)
    graph = model.graph
    inputs = {value.name for value in graph.input}
    outputs = {value.name for value in graph.output}
    found: list[str] = []
    for node in _walk(graph):
        for name in node.input:
            if name in inputs and types.get(name) == _UINT8 and not (
                    node.op_type == "Cast" and _cast_target(node) in _FLOATS):
                found.append(f"uint8 input {name!r} feeds {node.op_type} {node.name!r} "
                             f"({_CAST_INPUTS})")
        for name in node.output:
            if types.get(name) != _UINT8:
                continue
            if name not in outputs:
                found.append(f"{node.op_type} {node.name!r} makes uint8 tensor {name!r} "
                             f"inside the graph ({_OPERATORS_MD})")
            elif node.op_type != "Cast" or types.get(node.input[0]) not in _FLOATS:
                source = _type_name(types.get(node.input[0])) if node.input else "nothing"
                found.append(f"uint8 output {name!r} comes from {node.op_type} {node.name!r} "
                             f"of {source} ({_CONVERSIONS})")
    for initializer in graph.initializer:
        if initializer.data_type == _UINT8:
            found.append(f"uint8 initializer {initializer.name!r} ({_OPERATORS_MD})")
    return found


def shapes_from_float_casts(model) -> int:
    """Move the Shape/Size readers of each uint8 graph input onto that input's Cast to float
    (same shape, so the same values); return how many moved.

    The dynamo exporter reads a dynamic batch size with `Shape(image)` wherever the traced
    code asked for it, which TensorRT refuses (NVIDIA/TensorRT#3985)."""
    graph = model.graph
    moved = 0
    for value in graph.input:
        if value.type.tensor_type.elem_type != _UINT8:
            continue
        cast = next((node for node in graph.node if node.op_type == "Cast"
                     and list(node.input) == [value.name] and _cast_target(node) in _FLOATS),
                    None)
        if cast is None:
            continue
        for node in graph.node:
            if node.op_type in ("Shape", "Size") and list(node.input) == [value.name]:
                node.input[0] = cast.output[0]
                moved += 1
        if moved:  # the Cast reads a graph input only: first, before its new readers
            index = list(graph.node).index(cast)
            graph.node.insert(0, graph.node.pop(index))
    return moved


def _cast_target(node) -> int | None:
    return next((attribute.i for attribute in node.attribute if attribute.name == "to"), None)


def _type_name(element_type: int | None) -> str:
    import onnx

    if element_type is None:
        return "an unknown type"
    return onnx.helper.tensor_dtype_to_np_dtype(element_type).name


def _refusal(found: list[str], path: Path) -> ConfigurationError:
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return ConfigurationError(f"{path.name} would not build in TensorRT: {found[0]}{more}")


def refuse_uint8_rule_violations(model, path: str | Path) -> None:
    """Export's gate: the graph just written at `path` (loaded as `model`) is deleted and
    ConfigurationError raised when it breaks the rules."""
    found = uint8_rule_violations(model)
    if found:
        path = Path(path)
        path.unlink(missing_ok=True)
        raise _refusal(found, path)
