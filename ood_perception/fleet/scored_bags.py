"""`replay` of many bags: one scored bag per input, one shard per bag (`io/scored_bag.py`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from ood_perception.core.pipeline import Pipeline
from ood_perception.fleet.cluster import FleetConfig
from ood_perception.fleet.inputs import BagInput, expected_frames
from ood_perception.fleet.runner import Fleet, Shard
from ood_perception.fleet.spec import PipelineSpec
from ood_perception.io.scored_bag import ScoredBagConfig, score_bag


@dataclass(frozen=True)
class ScoredBagJob:
    bag: str
    out: str
    config: ScoredBagConfig


def scored_bag_job(pipeline: Pipeline, job: ScoredBagJob, progress) -> dict:
    """One bag into its output bag (written aside, so a lost worker leaves no half bag)."""
    out = Path(job.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return score_bag(Path(job.bag), out, pipeline, replace(job.config, progress=False),
                      progress)


def outputs_in(folder: Path, bags: list[BagInput]) -> list[tuple[BagInput, Path]]:
    """Each bag's output bag: its name (relative path) under `folder`."""
    return [(bag, folder / bag.name) for bag in bags]


def score_bags(pairs: list[tuple[BagInput, Path]], spec: PipelineSpec,
                config: ScoredBagConfig, fleet: FleetConfig) -> dict:
    """Replay every (bag, output) pair whose output does not exist yet; the run's summary.

    A bag that fails (corrupt, truncated, without the topics) is listed and the rest go on;
    outputs already there are skipped, so a re-run finishes an interrupted one.
    """
    todo = [(bag, out) for bag, out in pairs if not out.exists()]
    shards = [Shard(str(bag.path), expected_frames(bag.path, config.topics),
                    ScoredBagJob(str(bag.path.absolute()), str(out.absolute()), config))
              for bag, out in todo]
    results = []
    with Fleet(spec, fleet, max(len(shards), 1)) as workers:
        start = time.perf_counter()
        if shards:
            results = workers.run(scored_bag_job, shards, desc="replay")
        seconds = time.perf_counter() - start
    done = [r.value for r in results if r.error is None]
    frames = sum(value["frames"] for value in done)
    return {
        "workers": workers.workers,
        "bags": {"total": len(pairs), "replayed": len(done), "skipped": len(pairs) - len(todo),
                 "failed": len(results) - len(done)},
        "outputs": done,
        "failures": [{"bag": r.shard.key, "error": r.error} for r in results if r.error],
        "frames": frames,
        "dropped": sum(sum(value["dropped"].values()) for value in done),
        "seconds": seconds,
        "frames_per_second": frames / seconds if seconds > 0 else None,
    }
