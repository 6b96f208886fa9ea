"""Where shards run: this process, a Ray cluster started here, or a running Ray cluster."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from ood_perception.errors import ConfigurationError

LOCAL = "local"  # `--ray local`: start a Ray cluster on this machine


@dataclass(frozen=True)
class FleetConfig:
    """How a fleet run is spread; `address` None runs every shard in this process."""

    address: str | None = None  # None, "local", or a running cluster ("auto", "ray://h:10001")
    workers: int | None = None  # None: as many as the cluster's GPUs (or CPUs) fit
    gpus_per_worker: float | None = None  # None: 1 where the cluster has GPUs, else 0
    cpus_per_worker: float = 1.0
    max_retries: int = 3  # restarts of a lost worker, each retrying the shard it held
    progress: bool = True  # one bar over the whole run, on stderr

    def validate(self, names: dict[str, str] | None = None) -> None:
        """Refuse impossible settings before any work; `names` maps fields to CLI flags."""
        names = names or {}

        def name(field: str) -> str:
            return names.get(field, field)

        if self.address is not None:
            check_address(self.address, name("address"))
        if self.workers is not None and self.workers < 1:
            raise ConfigurationError(f"{name('workers')} must be >= 1, got {self.workers}")
        for field in ("gpus_per_worker", "cpus_per_worker"):
            value = getattr(self, field)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ConfigurationError(f"{name(field)} must be a number >= 0, got {value}")
        if self.max_retries < 0:
            raise ConfigurationError(f"{name('max_retries')} must be >= 0, got "
                                     f"{self.max_retries}")


def check_address(address: str, flag: str = "address") -> None:
    """An optional flag value swallows the next word: an existing path is not an address."""
    if not address:
        raise ConfigurationError(f"{flag} needs an address, or `local`")
    if address != LOCAL and "://" not in address and Path(address).exists():
        raise ConfigurationError(
            f"{flag} took {address!r} as the Ray address, but it is a file or folder; put "
            f"{flag} after the inputs, or write `{flag} local`")


def import_ray():
    """The `ray` module, or a ConfigurationError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigurationError(
            "fleet runs on Ray need the `ray` and `pyarrow` packages (the package's `fleet` "
            "extra): pip install ray pyarrow") from None
    return ray


def connect(config: FleetConfig):
    """The `ray` module, connected: a process already connected (a test, a notebook) keeps
    its connection; otherwise `local` starts a cluster here and any other address joins one.
    A cluster started here stops when the process exits."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if config.address == LOCAL:
        ray.init(address=LOCAL, include_dashboard=False, configure_logging=False)
    else:
        ray.init(address=config.address, configure_logging=False)
    return ray


def worker_layout(config: FleetConfig, resources: dict, shards: int) -> tuple[int, float]:
    """(workers, GPUs per worker) for a cluster offering `resources` (ray.cluster_resources)."""
    gpus = config.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if resources.get("GPU", 0.0) >= 1.0 else 0.0
    if config.workers is not None:
        count = config.workers
    elif gpus > 0:
        count = int(resources.get("GPU", 0.0) // gpus)
    else:
        count = int(resources.get("CPU", 1.0) // max(config.cpus_per_worker, 1e-9))
    return max(1, min(count, shards)), gpus
