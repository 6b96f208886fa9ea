"""Score a recorded rosbag through a `Pipeline` and write the outputs into a new bag.

Every Image / CompressedImage message goes through the same `Pipeline` the node uses (a
camera recorded both raw and compressed once, as its raw images); `<ns>/anomaly_score`
(32FC1), `<ns>/obstacle_mask` (mono8) and `<ns>/overlay` (bgr8) are written with the input's
header and bag timestamp, beside a copy of every input topic, so `ros2 bag play` and Foxglove
show them in sync. `<ns>` is the camera topic's parent (`/cam/image_raw` -> `/cam`). Each
frame's tracked obstacles (ids, boxes, and distance ahead where the bag has the camera's
camera_info and `ReplayConfig.poses` its pose) go to `<out>/obstacles.jsonl`, as the node
publishes them.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ood_perception.contract import MASK_OUTPUT, OVERLAY_OUTPUT, SCORE_NAME
from ood_perception.core.ground import CameraModel, CameraPose
from ood_perception.core.pipeline import Pipeline
from ood_perception.core.tracking import CameraTracks, TrackingConfig, track_fields
from ood_perception.errors import ConfigurationError, ImageDecodeError
from ood_perception.io import rosbag


@dataclass(frozen=True)
class ReplayConfig:
    """Which cameras, which outputs and where they go."""

    topics: tuple[str, ...] | None = None  # None: every image topic
    storage: str = "auto"  # "auto" (the input's), "sqlite3" or "mcap"
    overlay: bool = True
    copy_inputs: bool = True  # copy every input message into the output bag
    progress: bool = True
    tracking: TrackingConfig = TrackingConfig()
    poses: dict[str, CameraPose] = field(default_factory=dict)  # by image topic


# Inside the output bag's folder (rosbag2 reads only the files its metadata lists): one JSON
# line per answered frame with its tracked obstacles.
OBSTACLES_FILE = "obstacles.jsonl"


def output_namespaces(topics: list[str]) -> dict[str, str]:
    """Topic -> namespace of its outputs: the parent topic, or the topic when shared/root."""
    bases = {t: t.removesuffix("/compressed") for t in topics}
    parents = {t: b.rsplit("/", 1)[0] for t, b in bases.items()}
    counts = Counter(parents.values())
    return {t: parents[t] if parents[t] and counts[parents[t]] == 1 else bases[t] for t in topics}


def replay_bag(bag: Path, out: Path, pipeline: Pipeline, config: ReplayConfig,
               progress: Callable[[int], None] | None = None) -> dict:
    """Score `bag` into the new bag `out`; the summary (counts per output topic, timings).

    `out` appears only when complete: it is written aside and moved when done.
    `progress(n)` hears how many camera messages are done (a fleet run's progress bar).
    """
    if out.exists():
        raise ConfigurationError(f"output bag {out} exists already; choose a new folder")
    storage = rosbag.bag_storage(bag) if config.storage == "auto" else config.storage
    summary = {"output": str(out), "storage": storage,
               "score_threshold": pipeline.config.score_threshold}
    with rosbag.open_reader(bag) as reader:
        topics = list(config.topics) if config.topics else None
        cameras = rosbag.image_connections(reader, topics, one_per_camera=True)
        if not cameras:
            raise ConfigurationError(f"{bag} has no sensor_msgs Image/CompressedImage topics")
        names = (SCORE_NAME, MASK_OUTPUT) + ((OVERLAY_OUTPUT,) if config.overlay else ())
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
        if clash and config.copy_inputs:
            raise ConfigurationError(
                f"the bag already has {sorted(clash)}; pass --no-copy to replace them")
        # The bag keeps its own name inside the aside folder, since rosbags names the data
        # file after it.
        aside = out.with_name(f".{out.name}.partial")
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir()
        try:
            with rosbag.open_writer(aside / out.name, storage) as writer, (
                    aside / out.name / OBSTACLES_FILE).open("w") as obstacles:
                summary.update(_replay(reader, writer, pipeline, cameras, targets, config,
                                       progress, obstacles))
            (aside / out.name).rename(out)
            summary["obstacles"] = str(out / OBSTACLES_FILE)
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    return summary


def _replay(reader, writer, pipeline: Pipeline, cameras, targets: dict,
            config: ReplayConfig, progress: Callable[[int], None] | None, obstacles) -> dict:
    """Copy every message through and write the outputs of every camera message, and its
    tracked obstacles as a line of `obstacles`."""
    from tqdm import tqdm

    store = rosbag.typestore()
    copies = {}
    if config.copy_inputs:
        copies = {c.id: rosbag.copy_connection(writer, c, store) for c in reader.connections}
    connections = {
        full: writer.add_connection(full, rosbag.IMAGE, typestore=store)
        for full in sorted(set(targets.values()))
    }
    camera_ids = {c.id for c in cameras}
    tracks = CameraTracks(config.tracking, config.poses)
    # camera_info beside each camera topic (image_transport's rule) -> that camera topic.
    infos = {f"{c.topic.removesuffix('/compressed').rpartition('/')[0]}/camera_info": c.topic
             for c in cameras}
    written, dropped = Counter(), Counter()
    copied, seen, seconds = 0, 0, 0.0
    total = sum(c.msgcount for c in reader.connections)
    messages = tqdm(rosbag.stream_messages(reader), total=total, unit="msg", desc="replay",
                    file=sys.stderr, disable=not config.progress)
    for connection, timestamp, raw in messages:
        if connection.id in copies:
            writer.write(copies[connection.id], timestamp, raw)
            copied += 1
        if connection.topic in infos and connection.msgtype == rosbag.CAMERA_INFO:
            try:
                info = store.deserialize_cdr(raw, connection.msgtype)
                tracks.calibrate(infos[connection.topic], CameraModel.from_camera_info(info))
            except ConfigurationError:  # kept uncalibrated: no distances, still ids
                dropped["bad_camera_info"] += 1
        if connection.id not in camera_ids:
            continue
        seen += 1
        if progress is not None:
            progress(seen)
        try:
            msg, rgb = rosbag.decode(store, connection, raw)
        except ImageDecodeError as error:
            dropped[error.reason] += 1
            continue
        start = time.perf_counter()
        result = pipeline.process([rgb])[0]
        arrays = {
            SCORE_NAME: (np.asarray(result.anomaly_score, np.float32), "32FC1"),
            MASK_OUTPUT: (np.asarray(result.mask, np.uint8), "mono8"),
        }
        if config.overlay:
            arrays[OVERLAY_OUTPUT] = (pipeline.overlay(rgb, result), "bgr8")
        tracked = tracks.update(connection.topic, result.obstacles, result.mask)
        seconds += time.perf_counter() - start
        stamp = msg.header.stamp
        obstacles.write(json.dumps({"topic": connection.topic, "bag_time_ns": timestamp,
                                    "stamp_ns": stamp.sec * 10**9 + stamp.nanosec,
                                    "obstacles": [track_fields(t) for t in tracked]}) + "\n")
        for name, (array, encoding) in arrays.items():
            out = rosbag.image_message(store, msg.header, array, encoding)
            topic = targets[(connection.topic, name)]
            writer.write(connections[topic], timestamp, store.serialize_cdr(out, rosbag.IMAGE))
            written[topic] += 1
    return {
        "written": dict(written),
        "dropped": dict(dropped),
        "copied": copied,
        "frames": sum(v for k, v in written.items() if k.endswith(f"/{SCORE_NAME}")),
        "seconds_in_pipeline": seconds,
    }
