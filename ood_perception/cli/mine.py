"""`ood-perception mine`: score many recorded drives into a Parquet catalog and write the
top-K frames as images with overlays for labelling (`fleet/mine.py`), here or on Ray."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from ood_perception.cli.arguments import add_runtime_arguments, model_info_of, runtime_options
from ood_perception.cli.fleet_args import (
    add_fleet_arguments,
    fleet_config,
    node_postprocess,
    postprocess_params,
)
from ood_perception.errors import ConfigurationError
from ood_perception.fleet.mine import RANKINGS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "bags",
        nargs="+",
        help="rosbag2 folders, folders of bags, globs ('drives/*/bag') or text files listing "
        "one per line",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="output folder or URI pyarrow understands (s3://bucket/run): catalog/, top_k/ "
        "and summary.json; a re-run skips the bags its catalog has for this model",
    )
    parser.add_argument("--model", type=Path, required=True, help="exported model (.onnx)")
    add_runtime_arguments(parser)
    parser.add_argument(
        "--topics", nargs="+", help="image topics to score (default: every Image/CompressedImage)"
    )
    parser.add_argument(
        "--params", type=Path, help="node params YAML: score_threshold and postprocess settings"
    )
    parser.add_argument(
        "--score-threshold", type=float, help="obstacle threshold (overrides --params)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=1, help="frames per backend call (default 1)"
    )
    parser.add_argument(
        "--top-k", type=int, default=20, help="frames written for labelling (default 20; 0: none)"
    )
    parser.add_argument(
        "--rank-by",
        default="score_max",
        choices=RANKINGS,
        help="catalog column the top-K frames are chosen by, highest first",
    )
    add_fleet_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ood_perception.fleet.inputs import expand_bags
    from ood_perception.fleet.mine import MineConfig, mine
    from ood_perception.fleet.spec import PipelineSpec
    from ood_perception.fleet.storage import Location
    from ood_perception.ros.params_file import ground_from_params

    fleet = fleet_config(args)
    if not args.model.is_file():
        raise ConfigurationError(f"model file {args.model} does not exist")
    runtime_options(args, local=args.ray is None)
    params = postprocess_params(args.params, args.score_threshold)
    info = model_info_of(args.model)
    if info is not None:  # a missing threshold is said before any worker starts
        node_postprocess(params, info)
    ground, poses = ground_from_params(args.params)
    config = MineConfig(topics=tuple(args.topics) if args.topics else None,
                        batch_size=args.batch_size, top_k=args.top_k, rank_by=args.rank_by,
                        tracking=ground.tracking, poses=poses)
    config.validate({"batch_size": "--batch-size", "top_k": "--top-k", "rank_by": "--rank-by"})
    bags = expand_bags(args.bags)
    spec = PipelineSpec(str(args.model.absolute()), args.backend, device=args.device,
                        precision=args.precision, max_batch=args.batch_size,
                        postprocess=partial(node_postprocess, params))
    summary = mine(bags, spec, Location.parse(args.out), config, fleet)
    bags_done, frames = summary["bags"], summary["frames"]
    rate = summary["frames_per_second"]
    print(f"mined {bags_done['scored']} of {bags_done['total']} bags "
          f"({bags_done['skipped']} already in the catalog, {bags_done['failed']} failed) on "
          f"{summary['workers']} worker(s): {frames['scored']} frames scored, "
          f"{frames['dropped']} dropped, in {summary['seconds']:.1f} s"
          + (f" ({rate:.1f} frames/s)" if rate else ""))
    print(f"  catalog: {summary['catalog']}")
    for failure in summary["failures"]:
        print(f"  failed {failure['bag']}: {failure['error']}")
    if summary["top_k"]:
        print(f"  top {len(summary['top_k'])} frames by {summary['rank_by']} in "
              f"{Location.parse(args.out).child('top_k').uri}")
    return 1 if summary["failures"] else 0
