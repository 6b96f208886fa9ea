"""`ood-perception replay`: run the runtime pipeline over a recorded rosbag.

Offline (default): every Image / CompressedImage message goes through the same `Pipeline`
the node uses (a camera recorded both raw and compressed once, as its raw images);
`<ns>/anomaly_score` (32FC1), `<ns>/obstacle_mask` (mono8) and `<ns>/overlay` (bgr8) are
written with the input's header and bag timestamp into a new bag, beside a copy of every
input topic, so `ros2 bag play` and Foxglove show them in sync.
`<ns>` is the camera topic's parent (`/cam/image_raw` -> `/cam`).

Live (`--live`): publish a bag's image messages with rclpy at the recorded rate, headers
untouched, into a running `ood_perception_node`.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from ood_perception.errors import ConfigurationError, ImageDecodeError, OodPerceptionError
from ood_perception.io.rosbag import STORAGES

OUTPUTS = ("anomaly_score", "obstacle_mask", "overlay")
DISCOVERY_WAIT_S = 3.0


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


def output_namespaces(topics: list[str]) -> dict[str, str]:
    """Topic -> namespace of its outputs: the parent topic, or the topic when shared/root."""
    bases = {t: t.removesuffix("/compressed") for t in topics}
    parents = {t: b.rsplit("/", 1)[0] for t, b in bases.items()}
    counts = Counter(parents.values())
    return {t: parents[t] if parents[t] and counts[parents[t]] == 1 else bases[t] for t in topics}


def postprocess_config(args: argparse.Namespace, info):
    """The node's postprocess settings from `--params` (if any) and `--score-threshold`,
    the threshold defaulting to the model's score_range midpoint as in the node."""
    from ood_perception.cli.calibrate import postprocess_from_params

    return postprocess_from_params(args.params, args.score_threshold, info)


def replay_bag(args: argparse.Namespace) -> dict:
    """Offline replay; returns the summary (counts per output topic, timings)."""
    from ood_perception.backends import create_backend
    from ood_perception.core.pipeline import Pipeline
    from ood_perception.io import rosbag as rosbag_io

    if args.out is None or args.model is None:
        raise ConfigurationError("offline replay needs --out OUT_BAG and --model MODEL")
    if args.out.exists():
        raise ConfigurationError(f"output bag {args.out} exists already; choose a new folder")
    if not args.model.is_file():
        raise ConfigurationError(f"model file {args.model} does not exist")
    storage = rosbag_io.bag_storage(args.bag) if args.storage == "auto" else args.storage
    backend = create_backend(args.backend, str(args.model))
    pipeline = Pipeline(backend, postprocess_config(args, backend.info))
    summary = {"output": str(args.out), "storage": storage,
               "score_threshold": pipeline.config.score_threshold}
    with rosbag_io.open_reader(args.bag) as reader:
        cameras = rosbag_io.image_connections(reader, args.topics, one_per_camera=True)
        if not cameras:
            raise ConfigurationError(f"{args.bag} has no sensor_msgs Image/CompressedImage topics")
        names = OUTPUTS[:2] if args.no_overlay else OUTPUTS
        targets = {
            (topic, name): f"{ns}/{name}"
            for topic, ns in output_namespaces([c.topic for c in cameras]).items()
            for name in names
        }
        if len(set(targets.values())) != len(targets):
            raise ConfigurationError(
                f"cameras {sorted(c.topic for c in cameras)} would write the same output "
                "topics; choose them with --topics")
        clash = set(targets.values()) & {c.topic for c in reader.connections}
        if clash and not args.no_copy:
            raise ConfigurationError(
                f"the bag already has {sorted(clash)}; pass --no-copy to replace them"
            )
        # A bag that is there is complete: written aside, moved when done. The bag keeps its
        # own name inside the aside folder, since rosbags names the data file after it.
        aside = args.out.with_name(f".{args.out.name}.partial")
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir()
        try:
            with rosbag_io.open_writer(aside / args.out.name, storage) as writer:
                summary.update(_replay(args, reader, writer, pipeline, cameras, targets))
            (aside / args.out.name).rename(args.out)
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    return summary


def _replay(args, reader, writer, pipeline, cameras, targets: dict) -> dict:
    """Copy every message through and write the outputs of every camera message."""
    import numpy as np
    from tqdm import tqdm

    from ood_perception.io import rosbag as rosbag_io

    store = rosbag_io.typestore()
    copies = {}
    if not args.no_copy:
        copies = {c.id: rosbag_io.copy_connection(writer, c, store) for c in reader.connections}
    connections = {
        full: writer.add_connection(full, rosbag_io.IMAGE, typestore=store)
        for full in sorted(set(targets.values()))
    }
    camera_ids = {c.id for c in cameras}
    written, dropped = Counter(), Counter()
    copied, seconds = 0, 0.0
    total = sum(c.msgcount for c in reader.connections)
    messages = tqdm(reader.messages(), total=total, unit="msg", desc="replay", file=sys.stderr)
    for connection, timestamp, raw in messages:
        if connection.id in copies:
            writer.write(copies[connection.id], timestamp, raw)
            copied += 1
        if connection.id not in camera_ids:
            continue
        try:
            msg, rgb = rosbag_io.decode(store, connection, raw)
        except ImageDecodeError as error:
            dropped[error.reason] += 1
            continue
        start = time.perf_counter()
        result = pipeline.process([rgb])[0]
        arrays = {
            "anomaly_score": (np.asarray(result.anomaly_score, np.float32), "32FC1"),
            "obstacle_mask": (np.asarray(result.mask, np.uint8), "mono8"),
        }
        if not args.no_overlay:
            arrays["overlay"] = (pipeline.overlay(rgb, result), "bgr8")
        seconds += time.perf_counter() - start
        for name, (array, encoding) in arrays.items():
            out = rosbag_io.image_message(store, msg.header, array, encoding)
            topic = targets[(connection.topic, name)]
            writer.write(connections[topic], timestamp, store.serialize_cdr(out, rosbag_io.IMAGE))
            written[topic] += 1
    return {
        "written": dict(written),
        "dropped": dict(dropped),
        "copied": copied,
        "frames": sum(v for k, v in written.items() if k.endswith("/anomaly_score")),
        "seconds_in_pipeline": seconds,
    }


def _wait_for_subscribers(publishers: list, seconds: float) -> None:
    """Give discovery up to `seconds` to match every publisher, so the first frames arrive."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(p.get_subscription_count() > 0 for p in publishers):
            return
        time.sleep(0.05)


def publish_live(args: argparse.Namespace) -> dict:
    """Publish image messages at the recorded rate; the raw CDR is sent as is."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image

    from ood_perception.io import rosbag as rosbag_io

    if not (math.isfinite(args.rate) and args.rate > 0):
        raise ConfigurationError(f"--rate must be positive, got {args.rate}")
    sent: Counter = Counter()
    rclpy.init()
    node = rclpy.create_node("ood_perception_replay")
    try:
        with rosbag_io.open_reader(args.bag) as reader:
            cameras = rosbag_io.image_connections(reader, args.topics)
            if not cameras:
                raise ConfigurationError(f"{args.bag} has no image topics")
            publishers = {
                c.id: node.create_publisher(
                    CompressedImage if c.msgtype == rosbag_io.COMPRESSED else Image,
                    c.topic,
                    qos_profile_sensor_data,
                )
                for c in cameras
            }
            _wait_for_subscribers(list(publishers.values()), DISCOVERY_WAIT_S)
            wall_start, bag_start = time.monotonic(), None
            for connection, timestamp, raw in reader.messages(connections=cameras):
                bag_start = timestamp if bag_start is None else bag_start
                due = wall_start + (timestamp - bag_start) / 1e9 / args.rate
                time.sleep(max(0.0, due - time.monotonic()))
                publishers[connection.id].publish(bytes(raw))
                sent[connection.topic] += 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return {"published": dict(sent)}


def run(args: argparse.Namespace) -> int:
    try:
        summary = publish_live(args) if args.live else replay_bag(args)
    except OodPerceptionError as error:
        print(f"ood-perception replay: {error}", file=sys.stderr)
        return 2
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
