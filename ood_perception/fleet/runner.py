"""Shards of work run by workers that each hold one `Pipeline`, here or on Ray actors.

A job is a module-level function `job(pipeline, payload, progress) -> value` (`progress(n)`
says n frames of the shard are done). `Fleet` keeps its workers across stages (evaluate's two
passes, mine's scoring and rendering), so each builds its model once. On Ray a worker is an
actor with `max_restarts` and `max_task_retries`: a worker process lost mid-shard is
restarted by Ray and the shard runs again from its start, so results do not change. A job
that raises fails its own shard only; the others go on.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from ood_perception.core.pipeline import Pipeline
from ood_perception.errors import ConfigurationError
from ood_perception.fleet.cluster import LOCAL, FleetConfig, connect, worker_layout
from ood_perception.fleet.spec import PipelineSpec

Job = Callable[[Pipeline, Any, Callable[[int], None]], Any]


@dataclass(frozen=True)
class Shard:
    """One unit of work: a bag, or a run of a dataset's frames."""

    key: str  # what summaries and errors call it (a bag path, "frames 0-63")
    frames: int  # frames it is expected to hold, for the progress bar (0: unknown)
    payload: Any  # the job's argument; pickled to the worker


@dataclass
class ShardResult:
    """A shard's value, or why it failed; `worker` ran it (for stage-to-stage affinity)."""

    shard: Shard
    value: Any = None
    error: str | None = None
    cause: BaseException | None = None  # the job's exception, where one reached the driver
    worker: int = 0


class ProgressBoard:
    """Frames done per shard; a retried shard reports from zero again, so the highest count
    is kept and the total never goes back or counts a frame twice."""

    def __init__(self):
        self._done: dict[int, int] = {}

    def report(self, shard: int, done: int) -> None:
        self._done[shard] = max(self._done.get(shard, 0), done)

    def total(self) -> int:
        return sum(self._done.values())


class Reporter:
    """A job's `progress(n)` callback: forwards at most every `interval` seconds, and last."""

    def __init__(self, send: Callable[[int, int], Any], shard: int, interval: float = 0.5):
        self._send, self._shard, self._interval = send, shard, interval
        self._done, self._sent, self._last = 0, 0, 0.0

    def __call__(self, done: int) -> None:
        self._done = done
        now = time.monotonic()
        if now - self._last >= self._interval:
            self.flush()
            self._last = now

    def flush(self) -> None:
        if self._done != self._sent:
            self._send(self._shard, self._done)
            self._sent = self._done


class Worker:
    """One model per worker: the pipeline is built once and runs every shard handed over."""

    def __init__(self, spec: PipelineSpec):
        self.pipeline = spec.build()

    def ready(self) -> int:
        """The worker's process id, once its pipeline is built."""
        return os.getpid()

    def run(self, job: Job, payload: Any, shard: int, board) -> Any:
        """`job` on one shard; progress goes to `board`, the stage's ProgressBoard actor."""
        reporter = Reporter(lambda index, done: board.report.remote(index, done), shard)
        value = job(self.pipeline, payload, reporter)
        reporter.flush()
        return value


def _bar(config: FleetConfig, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total or None, desc=desc, unit="frame", file=sys.stderr,
                disable=not config.progress, dynamic_ncols=True)


class Fleet:
    """Workers for a run: one in this process, or `workers` Ray actors (see `FleetConfig`).

    Use as a context manager; `run()` any number of stages while it is open.
    """

    def __init__(self, spec: PipelineSpec, config: FleetConfig, max_shards: int):
        config.validate()
        self.spec, self.config = spec, config
        self._max_shards = max(1, max_shards)
        self._ray = None
        self._actors: list = []
        self._local: Worker | None = None
        self.workers = 1  # how many workers the run had

    def __enter__(self) -> Fleet:
        if self.config.address is None:
            self._local = Worker(self.spec)
            return self
        ray = connect(self.config)
        resources = ray.cluster_resources()
        count, gpus = worker_layout(self.config, resources, self._max_shards)
        if self.config.address == LOCAL and gpus > resources.get("GPU", 0.0):
            # nothing can join a cluster started here: the workers would wait forever
            raise ConfigurationError(f"--gpus-per-worker {gpus:g}, but this machine's Ray "
                                     f"cluster has {resources.get('GPU', 0.0):g} GPUs")
        spec = self.spec
        if gpus > 0 and spec.device is None:
            spec = replace(spec, device="cuda")  # Ray sets CUDA_VISIBLE_DEVICES per actor
        if gpus == 0 and spec.threads is None:
            spec = replace(spec, threads=max(1, math.ceil(self.config.cpus_per_worker)))
        self._ray, self.workers = ray, count
        actor = ray.remote(num_cpus=self.config.cpus_per_worker, num_gpus=gpus,
                           max_restarts=self.config.max_retries,
                           max_task_retries=self.config.max_retries)(Worker)
        self._actors = [actor.remote(spec) for _ in range(count)]
        try:
            ray.get([a.ready.remote() for a in self._actors])
        except ray.exceptions.RayError as error:
            self.__exit__(None, None, None)
            raise ConfigurationError(f"a fleet worker could not build its pipeline: "
                                     f"{_cause_text(error)}") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._ray is not None:
            for handle in self._actors:
                self._ray.kill(handle)  # frees their CPUs and GPUs for whatever runs next
            self._actors, self._ray = [], None
        self._local = None

    def run(self, job: Job, shards: list[Shard], desc: str = "fleet",
            assign: list[int] | None = None) -> list[ShardResult]:
        """Every shard through `job`; results in shard order. `assign[i]`: the worker that
        should run shard i (e.g. where an earlier stage left its files)."""
        with _progress(self.config, shards, desc) as bar:
            if self._ray is None:
                return self._run_here(job, shards, bar)
            return self._run_on_ray(job, shards, assign, bar)

    def _run_here(self, job: Job, shards: list[Shard], bar) -> list[ShardResult]:
        board = ProgressBoard()

        def send(index: int, done: int) -> None:
            board.report(index, done)
            bar.update(board.total() - bar.n)

        results = []
        for index, shard in enumerate(shards):
            reporter = Reporter(send, index, interval=0.0)
            try:
                value = job(self._local.pipeline, shard.payload, reporter)
            except Exception as error:  # one shard's failure is reported; the others go on
                results.append(ShardResult(shard, error=f"{type(error).__name__}: {error}",
                                           cause=error))
                continue
            reporter.flush()
            results.append(ShardResult(shard, value))
        return results

    def _run_on_ray(self, job: Job, shards: list[Shard], assign: list[int] | None,
                    bar) -> list[ShardResult]:
        ray = self._ray
        count = len(self._actors)
        shared: deque[int] = deque()
        own: list[deque[int]] = [deque() for _ in range(count)]
        for index in range(len(shards)):
            (own[assign[index] % count] if assign else shared).append(index)
        results: list[ShardResult | None] = [None] * len(shards)
        idle, pending = list(range(count)), {}
        board = ray.remote(num_cpus=0)(ProgressBoard).remote()
        while True:
            for worker in list(idle):
                queue = own[worker] or shared or next((q for q in own if q), None)
                if not queue:
                    break
                index = queue.popleft()
                ref = self._actors[worker].run.remote(job, shards[index].payload, index, board)
                pending[ref] = (index, worker)
                idle.remove(worker)
            if not pending:
                break
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            bar.update(ray.get(board.total.remote()) - bar.n)
            for ref in done:
                index, worker = pending.pop(ref)
                results[index] = self._collect(ref, shards[index], worker)
                if not isinstance(results[index].cause, ray.exceptions.RayActorError):
                    idle.append(worker)  # a worker Ray gave up restarting takes no more work
        ray.kill(board)
        for index, result in enumerate(results):
            if result is None:
                results[index] = ShardResult(shards[index], error="no fleet worker left: "
                                             "every worker was lost more often than retried")
        return results

    def _collect(self, ref, shard: Shard, worker: int) -> ShardResult:
        ray = self._ray
        try:
            return ShardResult(shard, ray.get(ref), worker=worker)
        except ray.exceptions.RayActorError as error:
            return ShardResult(shard, error=f"worker lost {self.config.max_retries + 1} times "
                               f"on this shard: {_cause_text(error)}", cause=error, worker=worker)
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if isinstance(error.cause, BaseException) else error
            return ShardResult(shard, error=f"{type(cause).__name__}: {cause}", cause=cause,
                               worker=worker)


def _cause_text(error: BaseException) -> str:
    """The first line of the innermost reason Ray gives."""
    cause = getattr(error, "cause", None)
    text = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else str(error)
    return text.strip().splitlines()[-1] if text.strip() else type(error).__name__


@contextmanager
def _progress(config: FleetConfig, shards: list[Shard], desc: str) -> Iterator:
    bar = _bar(config, sum(s.frames for s in shards), desc)
    try:
        yield bar
    finally:
        bar.close()
