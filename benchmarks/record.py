"""The results file every benchmark script writes: machine, date, command and figures, as JSON
(default `benchmarks/results/<benchmark>.json`, the files the README's figures cite)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
# The machine's load when the script started: on a shared machine, figures depend on it.
_LOAD_AT_START = os.getloadavg()


def add_json_argument(parser: argparse.ArgumentParser, benchmark: str) -> None:
    """`--json PATH`, by default the benchmark's file in benchmarks/results/."""
    parser.add_argument("--json", type=Path, default=RESULTS / f"{benchmark}.json",
                        help=f"results file (default: benchmarks/results/{benchmark}.json)")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What the figures ran on, and how busy it was (1, 5, 15 min load averages)."""
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return {"cpu": _cpu_model(), "cpus": os.cpu_count(), "memory_gb": round(memory_gb, 1),
            "system": platform.platform(), "python": platform.python_version(),
            "load_average_at_start": list(_LOAD_AT_START),
            "load_average_at_end": list(os.getloadavg())}


def write_results(path: Path, benchmark: str, figures: dict[str, Any]) -> Path:
    """Write `figures` with the machine, the UTC date and the command line that made them."""
    record = {"benchmark": benchmark,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": shlex.join(["python", os.path.relpath(sys.argv[0]), *sys.argv[1:]]),
              "machine": machine(), "figures": figures}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, allow_nan=True) + "\n")
    print(f"results: {path}", flush=True)
    return path
