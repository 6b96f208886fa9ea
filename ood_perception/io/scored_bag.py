"""Score a recorded rosbag through a `Pipeline` into a new bag that looks like a recording of
the live node.

Every Image / CompressedImage message goes through the same `Pipeline` the node uses (a
camera recorded both raw and compressed once, as its raw images). What each frame records
is a `FrameRecorder`'s: `ros/bag_recording.py` records the node's own messages on its own
topics with its QoS, so one Foxglove layout or RViz config opens both. Outputs keep the
input's header and bag timestamp, beside a copy of every input topic.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ood_perception.contract import ModelInfo
from ood_perception.core.pipeline import FrameResult, Outputs, Pipeline
from ood_perception.errors import ConfigurationError, ImageDecodeError
from ood_perception.io import rosbag


@dataclass(frozen=True)
class OfferedQos:
    """A publisher's QoS as rosbag2 records it (`offered_qos_profiles`); the numbers are the
    rmw enums: history 1 keep last, reliability 1 reliable / 2 best effort, durability 1
    transient local / 2 volatile. Durations are recorded as zero: the defaults (infinite)."""

    history: int
    depth: int
    reliability: int
    durability: int


@dataclass(frozen=True)
class OutputTopic:
    """One topic of the scored bag: its type and the QoS its publisher offers."""

    topic: str
    msgtype: str  # e.g. "sensor_msgs/msg/Image"
    qos: OfferedQos


@dataclass(frozen=True)
class RecordingPlan:
    """What a bag's cameras record: the topics, and per camera topic what the pipeline
    computes and which recorded topic carries its calibration (when the bag has it)."""

    topics: list[OutputTopic]
    outputs: dict[str, Outputs]
    camera_info: dict[str, str] = field(default_factory=dict)


class FrameRecorder(Protocol):
    """The messages a scored bag records of each camera frame."""

    def plan(self, cameras: list[str], bag_topics: set[str]) -> RecordingPlan:
        """The plan for a bag with image topics `cameras` among `bag_topics`."""

    def messages(self, camera: str, header: tuple[int, int, str], result: FrameResult,
                 info: ModelInfo, camera_info: bytes | None) -> list[tuple[str, bytes]]:
        """(topic, CDR) of one frame of `camera` with `header` (sec, nanosec, frame_id), the
        model's `info` and the newest recorded calibration of the camera (CDR)."""


@dataclass(frozen=True)
class ScoredBagConfig:
    """Which cameras, what each frame records and where it goes."""

    recorder: FrameRecorder
    topics: tuple[str, ...] | None = None  # None: every image topic
    storage: str = "auto"  # "auto" (the input's), "sqlite3" or "mcap"
    copy_inputs: bool = True  # copy every input message into the output bag
    progress: bool = True


def score_bag(bag: Path, out: Path, pipeline: Pipeline, config: ScoredBagConfig,
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
        plan = config.recorder.plan([c.topic for c in cameras],
                                    {c.topic for c in reader.connections})
        clash = {t.topic for t in plan.topics} & {c.topic for c in reader.connections}
        if clash and config.copy_inputs:
            raise ConfigurationError(
                f"the bag already has {sorted(clash)}; pass --no-copy to replace them")
        # The bag keeps its own name inside the aside folder, since rosbags names the data
        # file after it.
        aside = out.with_name(f".{out.name}.partial")
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir()
        try:
            with rosbag.open_writer(aside / out.name, storage) as writer:
                summary.update(_score(reader, writer, pipeline, cameras, plan, config,
                                      progress))
            (aside / out.name).rename(out)
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    return summary


def _score(reader, writer, pipeline: Pipeline, cameras, plan: RecordingPlan,
           config: ScoredBagConfig, progress: Callable[[int], None] | None) -> dict:
    """Copy every message through and record the outputs of every camera message."""
    from tqdm import tqdm

    store = rosbag.typestore()
    copies = {}
    if config.copy_inputs:
        copies = {c.id: rosbag.copy_connection(writer, c, store) for c in reader.connections}
    connections = {t.topic: _add_connection(writer, t.topic, t.msgtype, t.qos,
                                                          store) for t in plan.topics}
    camera_ids = {c.id for c in cameras}
    info_cameras = {info: camera for camera, info in plan.camera_info.items()}
    calibrations: dict[str, bytes] = {}
    written, dropped = Counter(), Counter()
    copied, seen, frames, seconds = 0, 0, 0, 0.0
    total = sum(c.msgcount for c in reader.connections)
    messages = tqdm(rosbag.stream_messages(reader), total=total, unit="msg", desc="replay",
                    file=sys.stderr, disable=not config.progress)
    for connection, timestamp, raw in messages:
        if connection.id in copies:
            writer.write(copies[connection.id], timestamp, raw)
            copied += 1
        if connection.topic in info_cameras:  # the newest calibration, as the node keeps it
            calibrations[info_cameras[connection.topic]] = bytes(raw)
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
        result = pipeline.process([rgb], plan.outputs[connection.topic])[0]
        header = (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)
        recorded = config.recorder.messages(connection.topic, header, result,
                                            pipeline.backend.info,
                                            calibrations.get(connection.topic))
        seconds += time.perf_counter() - start
        frames += 1
        for topic, data in recorded:
            writer.write(connections[topic], timestamp, data)
            written[topic] += 1
    return {
        "written": dict(written),
        "dropped": dict(dropped),
        "copied": copied,
        "frames": frames,
        "seconds_in_pipeline": seconds,
    }


def _add_connection(writer, topic: str, msgtype: str, qos: OfferedQos, store):
    """Register a topic written here, with the QoS its live publisher offers."""
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    zero = QosTime(sec=0, nsec=0)
    profile = Qos(history=QosHistory(qos.history), depth=qos.depth,
                  reliability=QosReliability(qos.reliability),
                  durability=QosDurability(qos.durability), deadline=zero, lifespan=zero,
                  liveliness=QosLiveliness.SYSTEM_DEFAULT, liveliness_lease_duration=zero,
                  avoid_ros_namespace_conventions=False)
    return writer.add_connection(topic, msgtype, typestore=store, offered_qos_profiles=[profile])
