"""`evaluate` over shards of a dataset's frames, with results equal to one local run.

Pass one: each shard fills its own exact pixel accumulator (counts per score key), worst
frames and inline components; the driver merges their state (counts add up, component
lists join in frame order), so AP, AUROC, FPR95 and the component figures are the very
numbers one pass over all frames gives. Pass two (components at the merged best-F1
threshold) reads each shard's score maps from where its worker kept them, scoring the
frames again only when they are not there (a worker restarted on another machine).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from ood_perception.core.pipeline import Pipeline
from ood_perception.errors import ConfigurationError, OodPerceptionError
from ood_perception.evaluation.component_metrics import ComponentConfig, ComponentMetrics
from ood_perception.evaluation.datasets import Dataset
from ood_perception.evaluation.evaluate import (
    EvaluationConfig,
    Frame,
    ScoreCache,
    cached_frames,
    finish,
    first_pass,
    inline_components,
    model_source,
    model_source_name,
    needs_second_pass,
    second_pass,
    second_pass_config,
    worst_frames,
)
from ood_perception.evaluation.pixel_metrics import PixelMetrics
from ood_perception.evaluation.s2m_metrics import S2MMetrics
from ood_perception.fleet.cluster import FleetConfig
from ood_perception.fleet.runner import Fleet, Shard, ShardResult
from ood_perception.fleet.spec import PipelineSpec

SHARD_FRAMES = 64  # frames per shard: small enough to spread, large enough to amortise


@dataclass(frozen=True)
class FramesJob:
    """A run of the dataset's frames, `start` being the first one's index in the dataset."""

    dataset: Dataset  # the shard's frames only
    start: int
    config: EvaluationConfig
    track: str
    cache: str | None  # where pass one keeps the maps for pass two (None: no pass two)
    named: bool  # maps kept as <frame name>.npy (--save-scores) rather than <index>.npy
    temporary: bool  # the cache is removed after pass two


@dataclass(frozen=True)
class ComponentsJob:
    """Pass two of one shard at the merged threshold."""

    frames: FramesJob
    components: ComponentConfig


def _scores(pipeline: Pipeline):
    """The same score function `evaluate` runs locally."""
    return lambda rgb: pipeline.process([rgb])[0].anomaly_score


def _counted(frames: Iterable[Frame], progress) -> Iterator[Frame]:
    for done, frame in enumerate(frames, start=1):
        yield frame
        progress(done)


def first_pass_job(pipeline: Pipeline, job: FramesJob, progress) -> dict:
    """Pass one over a shard: the exact state of its accumulators."""
    source = model_source("", job.dataset, _scores(pipeline))
    pixels = PixelMetrics(key_dtype=job.config.key_precision)
    s2m = S2MMetrics(*job.config.sweep_range)
    worst = worst_frames(job.config, job.start)
    inline = inline_components(job.config, job.track)
    cache = None
    if job.cache is not None:
        Path(job.cache).mkdir(parents=True, exist_ok=True)
        cache = ScoreCache(Path(job.cache), job.named)
    first_pass(_counted(source.frames(), progress), pixels, s2m, worst, inline, cache)
    return {"pixels": pixels.state(), "s2m": s2m, "worst": worst, "inline": inline}


def components_job(pipeline: Pipeline, job: ComponentsJob, progress) -> ComponentMetrics:
    """Pass two over a shard: its component metrics at the merged threshold."""
    frames_job = job.frames
    cache = ScoreCache(Path(frames_job.cache), frames_job.named)
    cache.paths = [cache.path_for(index, name)
                   for index, (name, _, _) in enumerate(frames_job.dataset.items)]
    if all(path.is_file() for path in cache.paths):
        frames = cached_frames(cache, frames_job.dataset)
    else:  # the worker that kept them ran elsewhere
        frames = model_source("", frames_job.dataset, _scores(pipeline)).frames()
    components = ComponentMetrics(job.components)
    second_pass(_counted(frames, progress), components)
    if frames_job.temporary:
        shutil.rmtree(frames_job.cache, ignore_errors=True)
    return components


def _values(results: list[ShardResult]) -> list:
    """The shards' values; a failed shard fails the run (metrics need every frame)."""
    for result in results:
        if result.error is not None:
            if isinstance(result.cause, OodPerceptionError):
                raise ConfigurationError(f"{result.shard.key}: {result.cause}") from None
            raise ConfigurationError(f"evaluation of {result.shard.key} failed: {result.error}")
    return [result.value for result in results]


def evaluate_dataset(name: str, dataset: Dataset, spec: PipelineSpec, config: EvaluationConfig,
                     fleet: FleetConfig, shard_frames: int = SHARD_FRAMES) -> dict:
    """`evaluate` of `spec`'s model on `dataset`, its frames spread over the fleet; the
    results dict, equal to `evaluation.evaluate.evaluate` on one machine."""
    config.validate()
    if shard_frames < 1:
        raise ConfigurationError(f"shard_frames must be >= 1, got {shard_frames}")
    track = dataset.track if config.track == "auto" else config.track
    second = needs_second_pass(config)
    scratch = Path(tempfile.gettempdir()) / f"ood_perception_eval_{uuid.uuid4().hex}"
    jobs = []
    for start in range(0, len(dataset), shard_frames):
        shard = replace(dataset, items=dataset.items[start:start + shard_frames])
        if config.save_scores is not None:
            cache, temporary = str(config.save_scores), False
        else:
            cache, temporary = (str(scratch / str(start)), True) if second else (None, False)
        jobs.append(FramesJob(shard, start, config, track, cache,
                              config.save_scores is not None, temporary))
    shards = [Shard(f"frames {job.start}-{job.start + len(job.dataset) - 1}", len(job.dataset),
                    job) for job in jobs]
    with Fleet(spec, fleet, len(shards)) as workers:
        first = workers.run(first_pass_job, shards, desc="evaluate")
        pixels = PixelMetrics(key_dtype=config.key_precision)
        s2m = S2MMetrics(*config.sweep_range)
        worst = worst_frames(config)
        inline = inline_components(config, track)
        for value in _values(first):
            pixels.merge_from(PixelMetrics.from_state(value["pixels"]))
            s2m.merge_from(value["s2m"])
            worst.merge_from(value["worst"])
            if inline is not None:
                inline.merge_from(value["inline"])
        components = inline
        if second:
            settings = second_pass_config(track, pixels)
            second_shards = [replace(s, payload=ComponentsJob(s.payload, settings))
                             for s in shards]
            components = ComponentMetrics(settings)
            for value in _values(workers.run(components_job, second_shards, desc="components",
                                             assign=[r.worker for r in first])):
                components.merge_from(value)
    shutil.rmtree(scratch, ignore_errors=True)
    return finish(pixels, s2m, components, worst, model_source_name(name, dataset), config,
                  track)

