"""`ood-perception calibrate`: the obstacle threshold that reaches a target TPR or FPR.

The threshold comes from the exact pixel curve of `metrics.PixelMetrics` on the labelled
set, is written as `score_threshold` into the node's params YAML (on top of
`--params-in`), and the metrics at that threshold go into the YAML's header comments and
a sibling `<params-out>.calibration.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from ood_perception.cli.arguments import check_output
from ood_perception.cli.evaluate import add_source_arguments, open_source
from ood_perception.contract import ModelInfo
from ood_perception.errors import ConfigurationError, OodPerceptionError
from ood_perception.evaluation.pixel_metrics import OperatingPoint, PixelMetrics
from ood_perception.evaluation.report import write_json
from ood_perception.ros.parameters import NODE_NAME, PARAMS_FILE_KEY, postprocess_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--target-tpr",
        type=float,
        help="reach at least this share of anomaly pixels (default 0.95)",
    )
    target.add_argument(
        "--target-fpr", type=float, help="flag at most this share of inlier pixels"
    )
    parser.add_argument(
        "--params-out",
        type=Path,
        required=True,
        help="node params YAML to write (score_threshold, model_path)",
    )
    parser.add_argument(
        "--params-in", type=Path, help="base params YAML whose other parameters are kept"
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
                            info: ModelInfo | None = None):
    """The node's PostprocessConfig from a params YAML and an explicit threshold override;
    an unset or NaN threshold is the model's score_range midpoint, as in the node."""
    params = read_params(path)
    if threshold is not None:
        params["score_threshold"] = float(threshold)
    return postprocess_config(params, info, "pass --score-threshold or set score_threshold "
                                            "in --params")


def calibrate(metrics: PixelMetrics, target_tpr: float | None, target_fpr: float | None):
    """The operating point: highest threshold with TPR >= target, or lowest with FPR <= target."""
    for name, value in (("--target-tpr", target_tpr), ("--target-fpr", target_fpr)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigurationError(f"{name} must be a fraction in [0, 1], got {value}")
    if metrics.positives + metrics.negatives == 0:
        raise ConfigurationError("no labelled pixels: every pixel is ignored")
    if target_fpr is not None:
        point = metrics.point_at_fpr(target_fpr)
    else:
        if metrics.positives == 0:
            raise ConfigurationError("the labelled set has no anomaly pixels; use --target-fpr")
        point = metrics.point_at_tpr(0.95 if target_tpr is None else target_tpr)
    if point is None:
        raise ConfigurationError(f"no threshold keeps the FPR at or below {target_fpr}")
    if not math.isfinite(point.threshold):
        raise ConfigurationError(f"the operating point's threshold is {point.threshold}; the "
                                 "node needs a finite one (do the score maps hold inf?)")
    return point


def write_params(
    path: Path, base: dict, point: OperatingPoint, model: Path | None, comment: list[str]
) -> None:
    """The params YAML (threshold as the float32 value the node compares with)."""
    params = dict(base)
    params["score_threshold"] = float(np.float32(point.threshold))
    if model is not None:
        params["model_path"] = str(model.resolve())
    document = {PARAMS_FILE_KEY: {"ros__parameters": params}}
    header = "".join(f"# {line}\n" for line in comment)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(document, sort_keys=False))


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    try:
        check_output("--params-out", args.params_out, folder=False)
        source = open_source(args)
        base = read_params(args.params_in)
        metrics = PixelMetrics()
        for _, _, score, label in tqdm(
            source.frames(), total=source.count, desc="calibrate", unit="frame", file=sys.stderr
        ):
            metrics.update(score, label)
        point = calibrate(metrics, args.target_tpr, args.target_fpr)
    except OodPerceptionError as error:
        print(f"ood-perception calibrate: {error}", file=sys.stderr)
        return 2
    target = (
        f"FPR <= {args.target_fpr}"
        if args.target_fpr is not None
        else f"TPR >= {0.95 if args.target_tpr is None else args.target_tpr}"
    )
    record = {
        "target": target,
        "score_threshold": float(np.float32(point.threshold)),
        "at_threshold": dataclasses.asdict(point),
        "ap": metrics.ap(),
        "auroc": metrics.auroc(),
        "fpr95": metrics.fpr_at_tpr(0.95),
        "frames": metrics.frames,
        "positive_pixels": metrics.positives,
        "negative_pixels": metrics.negatives,
        "source": source.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    comment = [
        f"calibrated by `ood-perception calibrate` on {source.name} ({metrics.frames} frames)",
        (
            f"target {target}: score > {record['score_threshold']!r} gives TPR {point.tpr:.4f}, "
            f"FPR {point.fpr:.6f}, precision {point.precision:.4f}, F1 {point.f1:.4f}"
        ),
        (
            f"dataset AP {record['ap']:.4f}, AUROC {record['auroc']:.4f}, "
            f"FPR95 {record['fpr95']:.4f}"
        ),
    ]
    sidecar = args.params_out.with_suffix(".calibration.json")
    try:
        write_params(args.params_out, base, point, args.model, comment)
        write_json(record, sidecar)
    except OSError as error:
        print(f"ood-perception calibrate: cannot write {args.params_out}: {error}",
              file=sys.stderr)
        return 2
    print("\n".join(comment))
    print(f"wrote {args.params_out} and {sidecar}")
    return 0
