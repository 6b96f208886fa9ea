"""`ood-perception calibrate`: the obstacle threshold that reaches a target TPR or FPR.

The threshold (`evaluation/calibration.py`) is written as `score_threshold` into the node's
params YAML (on top of `--params-in`, through `ros/params_file.py`), and the metrics at that
threshold go into the YAML's header comments and a sibling `<params-out>.calibration.json`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ood_perception.cli.arguments import check_output
from ood_perception.cli.evaluate import add_source_arguments, open_source
from ood_perception.evaluation.calibration import (
    DEFAULT_TARGET_TPR,
    calibration_record,
    operating_point,
)
from ood_perception.evaluation.evaluate import writing
from ood_perception.evaluation.pixel_metrics import PixelMetrics
from ood_perception.evaluation.report import write_json
from ood_perception.ros.params_file import read_params, write_params


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


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    check_output("--params-out", args.params_out, folder=False)
    source = open_source(args)
    base = read_params(args.params_in)
    metrics = PixelMetrics()
    for _, _, score, label in tqdm(
        source.frames(), total=source.count, desc="calibrate", unit="frame", file=sys.stderr
    ):
        metrics.update(score, label)
    point = operating_point(metrics, args.target_tpr, args.target_fpr)
    target = (
        f"FPR <= {args.target_fpr}"
        if args.target_fpr is not None
        else f"TPR >= {DEFAULT_TARGET_TPR if args.target_tpr is None else args.target_tpr}"
    )
    record = calibration_record(metrics, point, target, source.name)
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
    params = base | {"score_threshold": record["score_threshold"]}
    if args.model is not None:
        params["model_path"] = str(args.model.resolve())
    with writing(args.params_out):
        write_params(args.params_out, params, comment)
        write_json(record, sidecar)
    print("\n".join(comment))
    print(f"wrote {args.params_out} and {sidecar}")
    return 0
