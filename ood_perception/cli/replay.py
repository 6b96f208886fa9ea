"""`ood-perception replay`: run the runtime pipeline over a recorded rosbag.

Offline (default): `io/replay.py` scores every camera message into a new bag beside a copy
of the input topics. Live (`--live`): `ros/bag_publisher.py` publishes the bag's image
messages with rclpy at the recorded rate, headers untouched, into a running node.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ood_perception.errors import ConfigurationError
from ood_perception.io.rosbag import STORAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="input rosbag2 folder (sqlite3 or mcap)")
    parser.add_argument("--out", type=Path, help="output bag folder (must not exist)")
    parser.add_argument("--model", type=Path, help="exported contract model (.onnx)")
    parser.add_argument(
        "--backend",
        default="onnxruntime",
        help="inference backend: onnxruntime, torch or tensorrt",
    )
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


def replay_bag(args: argparse.Namespace) -> dict:
    """Offline replay of `args.bag` into `args.out`; the summary."""
    from ood_perception.backends import create_backend
    from ood_perception.core.pipeline import Pipeline
    from ood_perception.io.replay import ReplayConfig, replay_bag
    from ood_perception.ros.params_file import postprocess_from_params

    if args.out is None or args.model is None:
        raise ConfigurationError("offline replay needs --out OUT_BAG and --model MODEL")
    if args.out.exists():
        raise ConfigurationError(f"output bag {args.out} exists already; choose a new folder")
    if not args.model.is_file():
        raise ConfigurationError(f"model file {args.model} does not exist")
    backend = create_backend(args.backend, str(args.model))
    postprocess = postprocess_from_params(args.params, args.score_threshold, backend.info)
    config = ReplayConfig(topics=tuple(args.topics) if args.topics else None,
                          storage=args.storage, overlay=not args.no_overlay,
                          copy_inputs=not args.no_copy)
    return replay_bag(args.bag, args.out, Pipeline(backend, postprocess), config)


def publish_live(args: argparse.Namespace) -> dict:
    """`--live`: the bag's images published at the recorded rate."""
    from ood_perception.ros.bag_publisher import publish_bag

    if not (math.isfinite(args.rate) and args.rate > 0):
        raise ConfigurationError(f"--rate must be positive, got {args.rate}")
    return {"published": publish_bag(args.bag, args.topics, args.rate)}


def run(args: argparse.Namespace) -> int:
    summary = publish_live(args) if args.live else replay_bag(args)
    if args.live:
        for topic, count in summary["published"].items():
            print(f"published {count} messages on {topic}")
        return 0
    print(
        f"wrote {summary['output']} ({summary['storage']}): {summary['frames']} frames scored "
        f"in {summary['seconds_in_pipeline']:.2f} s, threshold {summary['score_threshold']:g}"
    )
    for topic, count in sorted(summary["written"].items()):
        print(f"  {topic}: {count} messages")
    print(f"  {summary['copied']} input messages copied")
    for reason, count in summary["dropped"].items():
        print(f"  dropped {count} frames: {reason}")
    return 0
