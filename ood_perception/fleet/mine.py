"""Mining recorded drives: a catalog row per image message, the top-K frames as images.

Stage one scores every bag not yet in the catalog for this model (one shard per bag, frames
streamed); stage two ranks the whole catalog by one column and renders the K best frames
again (image and overlay PNGs) for labelling. `summary.json` tells what the run did.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ood_perception.core.ground import CameraModel, CameraPose
from ood_perception.core.pipeline import Pipeline
from ood_perception.core.tracking import CameraTracks, TrackingConfig
from ood_perception.errors import ConfigurationError, ImageDecodeError, OodPerceptionError
from ood_perception.fleet import catalog as catalog_io
from ood_perception.fleet.cluster import FleetConfig
from ood_perception.fleet.inputs import BagInput, expected_frames
from ood_perception.fleet.runner import Fleet, Shard
from ood_perception.fleet.spec import PipelineSpec
from ood_perception.fleet.storage import Location
from ood_perception.io import rosbag

RANKINGS = ("score_max", "score_p99", "obstacles", "largest_area", "largest_score")


@dataclass(frozen=True)
class MineConfig:
    """What is scored, and which frames go to labelling."""

    topics: tuple[str, ...] | None = None  # None: every image topic of each bag
    batch_size: int = 1  # frames per backend call (several cameras or consecutive frames)
    top_k: int = 20
    rank_by: str = "score_max"  # a catalog column of RANKINGS, highest first
    # Obstacle ids per topic, and distances where a bag has the camera's camera_info and
    # `poses` (by image topic) its pose, as the node tracks and places them.
    tracking: TrackingConfig = TrackingConfig()
    poses: dict[str, CameraPose] = field(default_factory=dict)

    def validate(self, names: dict[str, str] | None = None) -> None:
        names = names or {}
        if self.batch_size < 1:
            raise ConfigurationError(f"{names.get('batch_size', 'batch_size')} must be >= 1, "
                                     f"got {self.batch_size}")
        if self.top_k < 0:
            raise ConfigurationError(f"{names.get('top_k', 'top_k')} must be >= 0, got "
                                     f"{self.top_k}")
        if self.rank_by not in RANKINGS:
            raise ConfigurationError(f"{names.get('rank_by', 'rank_by')} must be one of "
                                     f"{', '.join(RANKINGS)}, got {self.rank_by!r}")


@dataclass(frozen=True)
class BagJob:
    """Stage one's payload: score one bag into its catalog file."""

    bag: str
    catalog: Location
    topics: tuple[str, ...] | None
    batch_size: int
    model_version: str
    tracking: TrackingConfig = TrackingConfig()
    poses: dict[str, CameraPose] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderJob:
    """Stage two's payload: (rank, topic, frame index) of one bag's top frames."""

    bag: str
    frames: tuple[tuple[int, str, int], ...]
    folder: Location


def score_bag(pipeline: Pipeline, job: BagJob, progress) -> dict:
    """Every image message of `job.bag` into its catalog file; a bag that breaks keeps the
    rows read so far and one `bag_failed` row. The bag's counts and time."""
    start = time.perf_counter()
    part = catalog_io.CatalogPart(job.catalog, job.bag, pipeline.backend.info.model_name,
                                  job.model_version)
    error = None
    try:
        _score_messages(pipeline, job, part, progress)
    except OodPerceptionError as failure:  # corrupt or truncated bag, topics it lacks
        error = str(failure)
        part.add({"status": catalog_io.BAG_FAILED, "error": error})
    except BaseException:
        part.abort()
        raise
    part.commit()
    return {"bag": job.bag, "scored": part.counts[catalog_io.SCORED],
            "dropped": part.counts[catalog_io.DROPPED], "error": error,
            "seconds": time.perf_counter() - start}


def _score_messages(pipeline: Pipeline, job: BagJob, part, progress) -> None:
    store = rosbag.typestore()
    with rosbag.open_reader(job.bag) as reader:
        cameras = rosbag.image_connections(reader, list(job.topics) if job.topics else None,
                                           one_per_camera=True)
        if not cameras:
            raise ConfigurationError(f"{job.bag} has no sensor_msgs Image/CompressedImage topics")
        indices, batch, done = Counter(), [], 0
        tracks = CameraTracks(job.tracking, job.poses)
        infos = {f"{c.topic.removesuffix('/compressed').rpartition('/')[0]}/camera_info":
                 c.topic for c in cameras}
        chosen = cameras + [c for c in reader.connections
                            if c.topic in infos and c.msgtype == rosbag.CAMERA_INFO]
        for connection, timestamp, raw in rosbag.stream_messages(reader, chosen):
            if connection.msgtype == rosbag.CAMERA_INFO:
                try:
                    info = store.deserialize_cdr(raw, connection.msgtype)
                    tracks.calibrate(infos[connection.topic], CameraModel.from_camera_info(info))
                except ConfigurationError:
                    pass  # a camera without a valid calibration gets ids, not distances
                continue
            frame = {"topic": connection.topic, "frame_index": indices[connection.topic],
                     "bag_time_ns": timestamp}
            indices[connection.topic] += 1
            try:
                msg, rgb = rosbag.decode(store, connection, raw)
            except ImageDecodeError as drop:
                part.add({"status": catalog_io.DROPPED, "error": f"{drop.reason}: {drop}"},
                         **frame)
                done += 1
                progress(done)
                continue
            frame["stamp_ns"] = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            batch.append((frame, rgb))
            if len(batch) >= job.batch_size:
                done += _score_batch(pipeline, batch, part, tracks)
                progress(done)
        done += _score_batch(pipeline, batch, part, tracks)
        progress(done)


def _score_batch(pipeline: Pipeline, batch: list, part, tracks: CameraTracks) -> int:
    results = pipeline.process([rgb for _, rgb in batch])
    for (frame, _), result in zip(batch, results, strict=True):
        tracked = tracks.update(frame["topic"], result.obstacles, result.mask)
        part.add(catalog_io.scored_row(result, tracked), **frame)
    count = len(batch)
    batch.clear()
    return count


def render_frames(pipeline: Pipeline, job: RenderJob, progress) -> list[dict]:
    """Score the chosen frames of one bag again and write `<rank>_..._image.png` and
    `..._overlay.png`; the files written."""
    wanted = {(topic, index): rank for rank, topic, index in job.frames}
    store = rosbag.typestore()
    written, indices = [], Counter()
    stem = _slug("_".join(Path(job.bag).parts[-2:]))  # e.g. drive0_bag
    with rosbag.open_reader(job.bag) as reader:
        cameras = [c for c in reader.connections if c.topic in {t for t, _ in wanted}]
        for connection, _, raw in rosbag.stream_messages(reader, cameras):
            key = (connection.topic, indices[connection.topic])
            indices[connection.topic] += 1
            if key not in wanted:
                continue
            _, rgb = rosbag.decode(store, connection, raw)
            result = pipeline.process([rgb])[0]
            name = f"{wanted[key]:04d}_{stem}_{_slug(key[0])}_{key[1]:06d}"
            files = {"image": job.folder.child(f"{name}_image.png"),
                     "overlay": job.folder.child(f"{name}_overlay.png")}
            files["image"].write_bytes(_png(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)))
            files["overlay"].write_bytes(_png(pipeline.overlay(rgb, result)))
            written.append({"rank": wanted[key], **{k: v.uri for k, v in files.items()}})
            progress(len(written))
            if len(written) == len(wanted):
                break
    return written


def _png(bgr: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise ConfigurationError("cannot encode a PNG")
    return data.tobytes()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "root"


def top_frames(catalog: Location, version: str, config: MineConfig) -> list[dict]:
    """The catalog's K best scored frames of this model by `rank_by` (ties: bag, topic and
    frame order), as dicts with their rank from 1."""
    import pyarrow.compute as pc

    if config.top_k == 0:
        return []
    columns = ["bag", "topic", "frame_index", "stamp_ns", "status", "model_version",
               config.rank_by]
    table = catalog_io.read_catalog(catalog, columns)
    keep = pc.and_(pc.and_(pc.equal(table["status"], catalog_io.SCORED),
                           pc.equal(table["model_version"], version)),
                   pc.is_valid(table[config.rank_by]))
    table = table.filter(keep).sort_by([(config.rank_by, "descending"), ("bag", "ascending"),
                                        ("topic", "ascending"), ("frame_index", "ascending")])
    rows = table.slice(0, config.top_k).select(
        ["bag", "topic", "frame_index", "stamp_ns", config.rank_by]).to_pylist()
    return [{"rank": rank, **row} for rank, row in enumerate(rows, start=1)]


def mine(bags: list[BagInput], spec: PipelineSpec, out: Location, config: MineConfig,
         fleet: FleetConfig) -> dict:
    """Score `bags` into `out`/catalog, render the top K into `out`/top_k; the summary (also
    written as `out`/summary.json)."""
    config.validate()
    catalog, folder = out.child("catalog"), out.child("top_k")
    catalog.makedirs()
    version = catalog_io.model_version(spec.model)
    done = catalog_io.finished_bags(catalog, version)
    keys = [str(b.path.absolute()) for b in bags]
    shards = [Shard(key, expected_frames(bag.path, config.topics),
                    BagJob(key, catalog, config.topics, config.batch_size, version,
                           config.tracking, config.poses))
              for bag, key in zip(bags, keys, strict=True) if key not in done]
    with Fleet(spec, fleet, max(len(shards), 1)) as workers:
        start = time.perf_counter()
        results = workers.run(score_bag, shards, desc="mine") if shards else []
        seconds = time.perf_counter() - start
        failed = []
        for result in results:
            error = result.error or (result.value or {}).get("error")
            if error:
                failed.append({"bag": result.shard.key, "error": error})
            if result.error:  # the worker never wrote the bag's file: record the failure
                part = catalog_io.CatalogPart(catalog, result.shard.key, None, version)
                part.add({"status": catalog_io.BAG_FAILED, "error": result.error})
                part.commit()
        top = top_frames(catalog, version, config)
        rendered = _render(workers, top, folder)
    scored = sum(r.value["scored"] for r in results if r.value)
    summary = {
        "catalog": catalog.uri, "model": spec.model, "model_version": version,
        "workers": workers.workers,
        "bags": {"total": len(bags), "scored": len(results) - len(failed),
                 "skipped": len(bags) - len(shards), "failed": len(failed)},
        "failures": failed,
        "frames": {"scored": scored,
                   "dropped": sum(r.value["dropped"] for r in results if r.value)},
        "seconds": seconds, "frames_per_second": scored / seconds if seconds > 0 else None,
        "rank_by": config.rank_by, "top_k": rendered,
    }
    out.child("summary.json").write_bytes(json.dumps(summary, indent=1).encode())
    return summary


def _render(workers: Fleet, top: list[dict], folder: Location) -> list[dict]:
    """Stage two: one shard per bag holding top frames; `top` with the files added."""
    if not top:
        return []
    folder.makedirs()
    by_bag: dict[str, list] = {}
    for row in top:
        by_bag.setdefault(row["bag"], []).append((row["rank"], row["topic"], row["frame_index"]))
    shards = [Shard(bag, len(frames), RenderJob(bag, tuple(frames), folder))
              for bag, frames in by_bag.items()]
    files = {}
    for result in workers.run(render_frames, shards, desc="top-k"):
        for entry in result.value or []:
            files[entry["rank"]] = entry
    return [{**row, **{k: v for k, v in files.get(row["rank"], {}).items() if k != "rank"}}
            for row in top]
