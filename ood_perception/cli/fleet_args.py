"""Flags shared by the commands that run on many bags or frames (`replay`, `evaluate`,
`mine`): where the work runs (`--ray`) and how it is spread."""

from __future__ import annotations

import argparse
from pathlib import Path

from ood_perception.contract import ModelInfo
from ood_perception.core.postprocess import PostprocessConfig
from ood_perception.errors import ConfigurationError
from ood_perception.fleet.cluster import LOCAL, FleetConfig

THRESHOLD_HINT = "pass --score-threshold or set score_threshold in --params"


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fleet (Ray)")
    group.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL,
        metavar="ADDRESS",
        help="run the shards on Ray: `local` (the default value) starts a cluster on this "
        "machine; an address (auto, HOST:6379, ray://HOST:10001) joins a running one",
    )
    group.add_argument(
        "--workers", type=int, help="Ray workers, one model each (default: as many as fit)"
    )
    group.add_argument(
        "--gpus-per-worker",
        type=float,
        help="GPUs per worker (default: 1 where the cluster has GPUs, else 0 = CPU)",
    )
    group.add_argument(
        "--cpus-per-worker", type=float, default=1.0, help="CPUs per worker (default 1)"
    )
    group.add_argument(
        "--max-retries",
        type=int,
        default=3,
        help="restarts of a lost worker, each running its shard again (default 3)",
    )


def fleet_config(args: argparse.Namespace) -> FleetConfig:
    """The FleetConfig the flags describe; the spreading flags need --ray."""
    if args.ray is None:
        given = [flag for flag, value in (("--workers", args.workers),
                                          ("--gpus-per-worker", args.gpus_per_worker))
                 if value is not None]
        if given:
            raise ConfigurationError(f"{', '.join(given)} spread work over Ray; add --ray")
    config = FleetConfig(address=args.ray, workers=args.workers,
                         gpus_per_worker=args.gpus_per_worker,
                         cpus_per_worker=args.cpus_per_worker, max_retries=args.max_retries)
    config.validate({"address": "--ray", "workers": "--workers",
                     "gpus_per_worker": "--gpus-per-worker",
                     "cpus_per_worker": "--cpus-per-worker", "max_retries": "--max-retries"})
    return config


def node_postprocess(params: dict, info: ModelInfo) -> PostprocessConfig:
    """The node's postprocess settings from params values and the graph's metadata; a
    module-level function, so a fleet worker receives it by reference."""
    from ood_perception.ros.parameters import postprocess_config

    return postprocess_config(params, info, THRESHOLD_HINT)


def postprocess_params(path: Path | None, threshold: float | None) -> dict:
    """A params file's values (read here, so workers need not reach it) with the
    --score-threshold override."""
    from ood_perception.ros.params_file import read_params

    params = read_params(path)
    if threshold is not None:
        params["score_threshold"] = float(threshold)
    return params
