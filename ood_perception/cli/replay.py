"""`ood-perception replay`: run the runtime pipeline over recorded rosbags.

Offline (default): `io/scored_bag.py` scores every camera message into a new bag beside a
copy of the input topics, recorded as the live node publishes it (`ros/bag_recording.py`).
One bag: `--out` is the output bag. Many (several bags, a folder of bags, a glob, a list
file): `--out` is a folder that gets one scored bag per input, here or on Ray (`--ray`,
`fleet/scored_bags.py`). Live (`--live`): `ros/bag_publisher.py` publishes the bag's image
messages with rclpy at the recorded rate, headers untouched, into a running node.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ood_perception.cli.arguments import add_runtime_arguments, model_info_of, runtime_options
from ood_perception.cli.fleet_args import (
    add_fleet_arguments,
    fleet_config,
    node_postprocess,
    postprocess_params,
)
from ood_perception.errors import ConfigurationError
from ood_perception.io.rosbag import STORAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "bags",
        nargs="+",
        help="input rosbag2 folder (sqlite3 or mcap); or several, a folder of bags, a glob "
        "('drives/*/bag') or a text file listing one per line",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="output bag folder (must not exist); with many bags, the folder that gets one "
        "scored bag per input (outputs already there are skipped)",
    )
    parser.add_argument("--model", type=Path, help="exported contract model (.onnx)")
    add_runtime_arguments(parser)
    parser.add_argument(
        "--topics",
        nargs="+",
        help="image topics to process (default: every Image/CompressedImage)",
    )
    parser.add_argument(
        "--storage",
        default="auto",
        choices=("auto", *STORAGES),
        help="output storage (default: same as the input)",
    )
    parser.add_argument(
        "--params", type=Path, help="node params YAML: score_threshold and postprocess settings"
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        help="obstacle threshold (overrides --params and the default)",
    )
    parser.add_argument("--no-overlay", action="store_true", help="skip the overlay topics")
    parser.add_argument(
        "--no-copy", action="store_true", help="do not copy the input topics into the output bag"
    )
    live = parser.add_argument_group("live mode")
    live.add_argument(
        "--live",
        action="store_true",
        help="publish the bag's images with rclpy instead of writing a bag",
    )
    live.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    add_fleet_arguments(parser)


def _single_bag(args: argparse.Namespace) -> Path | None:
    """The bag when exactly one bag folder is given (then `--out` is the output bag)."""
    from ood_perception.fleet.inputs import is_bag

    if len(args.bags) == 1 and is_bag(Path(args.bags[0])):
        return Path(args.bags[0])
    return None


def _scored_bag_config(args: argparse.Namespace):
    from ood_perception.io.scored_bag import ScoredBagConfig
    from ood_perception.ros.bag_recording import NodeRecorder
    from ood_perception.ros.params_file import read_params

    return ScoredBagConfig(recorder=NodeRecorder(read_params(args.params),
                                                 overlay=not args.no_overlay),
                           topics=tuple(args.topics) if args.topics else None,
                           storage=args.storage, copy_inputs=not args.no_copy)


def replay_bag(args: argparse.Namespace) -> dict:
    """Offline replay of one bag into `args.out`, in this process; the summary."""
    from ood_perception.backends import create_backend
    from ood_perception.core.pipeline import Pipeline
    from ood_perception.io.scored_bag import score_bag
    from ood_perception.ros.params_file import postprocess_from_params

    options = runtime_options(args)
    info = model_info_of(args.model)
    if info is not None:  # a missing threshold is said before the model loads
        postprocess_from_params(args.params, args.score_threshold, info)
    backend = create_backend(args.backend, str(args.model), **options)
    postprocess = postprocess_from_params(args.params, args.score_threshold, backend.info)
    return score_bag(_single_bag(args), args.out, Pipeline(backend, postprocess),
                     _scored_bag_config(args))


def replay_many(args: argparse.Namespace) -> dict:
    """Offline replay of many bags (or one on Ray), one output bag each; the run's summary."""
    from functools import partial

    from ood_perception.fleet.inputs import BagInput, expand_bags
    from ood_perception.fleet.scored_bags import outputs_in, score_bags
    from ood_perception.fleet.spec import PipelineSpec

    fleet = fleet_config(args)
    runtime_options(args, local=args.ray is None)
    params = postprocess_params(args.params, args.score_threshold)
    info = model_info_of(args.model)
    if info is not None:  # a missing threshold is said before any worker starts
        node_postprocess(params, info)
    single = _single_bag(args)
    if single is not None:
        pairs = [(BagInput(single, single.name), args.out)]
    else:
        if args.out.exists() and not args.out.is_dir():
            raise ConfigurationError(f"--out {args.out} must be a folder for many bags")
        pairs = outputs_in(args.out, expand_bags(args.bags))
    spec = PipelineSpec(str(args.model.absolute()), args.backend, device=args.device,
                        precision=args.precision, postprocess=partial(node_postprocess, params))
    return score_bags(pairs, spec, _scored_bag_config(args), fleet)


def publish_live(args: argparse.Namespace) -> dict:
    """`--live`: the bag's images published at the recorded rate."""
    from ood_perception.ros.bag_publisher import publish_bag

    if not (math.isfinite(args.rate) and args.rate > 0):
        raise ConfigurationError(f"--rate must be positive, got {args.rate}")
    if len(args.bags) != 1:
        raise ConfigurationError("--live publishes one bag at a time")
    return {"published": publish_bag(Path(args.bags[0]), args.topics, args.rate)}


def _check_offline(args: argparse.Namespace) -> None:
    if args.out is None or args.model is None:
        raise ConfigurationError("offline replay needs --out OUT and --model MODEL")
    if args.out.exists() and _single_bag(args) is not None:
        raise ConfigurationError(f"output bag {args.out} exists already; choose a new folder")
    if not args.model.is_file():
        raise ConfigurationError(f"model file {args.model} does not exist")


def run(args: argparse.Namespace) -> int:
    if args.live:
        for topic, count in publish_live(args)["published"].items():
            print(f"published {count} messages on {topic}")
        return 0
    _check_offline(args)
    if args.ray is None and _single_bag(args) is not None:
        fleet_config(args)  # spreading flags without --ray are refused
        print_bag(replay_bag(args))
        return 0
    summary = replay_many(args)
    for output in summary["outputs"]:
        print_bag(output)
    bags = summary["bags"]
    print(f"replayed {bags['replayed']} of {bags['total']} bags ({bags['skipped']} skipped, "
          f"{bags['failed']} failed) on {summary['workers']} worker(s): {summary['frames']} "
          f"frames in {summary['seconds']:.1f} s")
    for failure in summary["failures"]:
        print(f"  failed {failure['bag']}: {failure['error']}")
    return 1 if summary["failures"] else 0


def print_bag(summary: dict) -> None:
    """One output bag's lines."""
    print(
        f"wrote {summary['output']} ({summary['storage']}): {summary['frames']} frames scored "
        f"in {summary['seconds_in_pipeline']:.2f} s, threshold {summary['score_threshold']:g}"
    )
    for topic, count in sorted(summary["written"].items()):
        print(f"  {topic}: {count} messages")
    print(f"  {summary['copied']} input messages copied")
    for reason, count in summary["dropped"].items():
        print(f"  dropped {count} frames: {reason}")
