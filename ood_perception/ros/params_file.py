"""ROS params files (YAML) read and written the way rclpy reads them, without rclpy.

The tools that share the node's parameters (`calibrate` writes the threshold, `replay` and
`run` threshold like the node) go through here, so a file means the same to all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ood_perception.contract import ModelInfo
from ood_perception.core.ground import CameraPose
from ood_perception.core.postprocess import PostprocessConfig
from ood_perception.errors import ConfigurationError
from ood_perception.ros.parameters import (
    EXTRINSICS_PREFIX,
    GROUND_PARAMETERS,
    NODE_NAME,
    PARAMETERS,
    PARAMS_FILE_KEY,
    GroundSettings,
    _camera_name,
    _checked,
    postprocess_config,
)


def read_params(path: Path | None) -> dict:
    """The node's parameters in a params YAML (empty without a file), merged as rclpy does:
    every `/**` and `[/**|/ns]/ood_perception_node` section, later ones overriding earlier
    ones. A file without such a section, or naming the node in two namespaces, is an error."""
    if path is None:
        return {}
    if not path.is_file():
        raise ConfigurationError(f"params file {path} does not exist")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigurationError(f"params file {path} is not valid YAML: "
                                 f"{str(error).splitlines()[0]}") from None
    if not isinstance(document, dict) or not all(isinstance(k, str) for k in document):
        raise ConfigurationError(f"{path} is not a ROS params YAML (node names at the top)")
    merged, namespaces, found = {}, set(), False
    for node, section in document.items():
        *namespace, name = node.strip("/").split("/")
        if name not in (NODE_NAME, "**"):
            continue
        params = section.get("ros__parameters") if isinstance(section, dict) else None
        if not isinstance(params, dict):
            raise ConfigurationError(f"{path}: {node} needs a ros__parameters mapping")
        if name == NODE_NAME and "/".join(namespace) not in ("", "**"):
            namespaces.add("/".join(namespace))
        merged |= params
        found = True
    if not found:
        raise ConfigurationError(f"{path} has no section for {NODE_NAME} (or /**); it has "
                                 f"{', '.join(map(str, document)) or 'none'}")
    if len(namespaces) > 1:
        raise ConfigurationError(f"{path} sets {NODE_NAME} in several namespaces "
                                 f"({', '.join(sorted(namespaces))}); give one node's file")
    return merged


def postprocess_from_params(path: Path | None, threshold: float | None = None,
                            info: ModelInfo | None = None) -> PostprocessConfig:
    """The node's PostprocessConfig from a params YAML and an explicit threshold override;
    an unset or NaN threshold is the model's score_range midpoint, as in the node."""
    params = read_params(path)
    if threshold is not None:
        params["score_threshold"] = float(threshold)
    return postprocess_config(params, info, "pass --score-threshold or set score_threshold "
                                            "in --params")


def ground_from_params(path: Path | None) -> tuple[GroundSettings, dict[str, CameraPose]]:
    """The node's ground and tracking settings and its cameras' poses by image topic
    (`camera_extrinsics.<camera>`, dotted or nested as in a params YAML) from a params file,
    checked as the node checks them."""
    params = read_params(path)
    extrinsics = {name[len(EXTRINSICS_PREFIX):]: value for name, value in params.items()
                  if name.startswith(EXTRINSICS_PREFIX)}
    nested = params.get(EXTRINSICS_PREFIX.rstrip("."), {})
    extrinsics |= nested if isinstance(nested, dict) else {}
    settings = GroundSettings.from_checked({name: _checked(name, params.get(
        name, PARAMETERS[name].default)) for name in GROUND_PARAMETERS})
    topics = list(params.get("image_topics", PARAMETERS["image_topics"].default))
    names = list(params.get("camera_names") or [_camera_name(topic) for topic in topics])
    unknown = sorted(set(extrinsics) - set(names))
    if unknown or len(names) != len(topics):
        raise ConfigurationError(f"{path}: camera_extrinsics for {unknown or 'cameras'} not "
                                 f"among the cameras {names} of image_topics {topics}")
    poses = {topic: CameraPose.from_extrinsics(extrinsics[name],
                                               f"parameter {EXTRINSICS_PREFIX}{name}")
             for topic, name in zip(topics, names, strict=True) if name in extrinsics}
    return settings, poses


def write_params(path: Path, params: dict[str, Any], comment: list[str] = ()) -> None:
    """A params YAML for the node under any namespace and name, with `comment` lines on top."""
    document = {PARAMS_FILE_KEY: {"ros__parameters": params}}
    header = "".join(f"# {line}\n" for line in comment)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(document, sort_keys=False))
