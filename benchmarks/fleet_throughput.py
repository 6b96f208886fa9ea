"""`ood-perception mine` over synthetic drives, in this process and on a local Ray cluster
with 1 and 2 workers (docs/fleet.md, "Throughput here"): frames per second of the scoring
stage (`summary.json`) and the wall time of the whole command, each run its own process.
Run: .venv/bin/python benchmarks/fleet_throughput.py [--drives 4] [--frames 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from record import add_json_argument, write_results

RUNS = {"in this process": [], "ray, 1 worker": ["--ray", "local", "--workers", "1"],
        "ray, 2 workers": ["--ray", "local", "--workers", "2"]}


def _cli(*args: str) -> float:
    """Wall seconds of one `ood-perception` command in a fresh interpreter."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ood_perception.cli.main", *args], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drives", type=int, default=4)
    parser.add_argument("--frames", type=int, default=20, help="frames per drive")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/fleet_throughput"))
    add_json_argument(parser, "fleet_throughput")
    args = parser.parse_args(argv)
    drives, model = args.folder / "drives", args.folder / "uem_demo.onnx"
    for seed in range(1, args.drives + 1):
        _cli("make-scenes", "--output", str(drives / f"drive{seed}"), "--bag", "--count",
             str(args.frames), "--seed", str(seed))
    _cli("export", "--model", "uem-demo", "--input-size", "224x448", "--output", str(model))
    runs = {}
    for name, flags in RUNS.items():
        out = args.folder / f"out_{len(runs)}"
        load = os.getloadavg()[0]
        wall = _cli("mine", str(drives), "--model", str(model), "--out", str(out), "--top-k",
                    "5", *flags)
        summary = json.loads((out / "summary.json").read_text())
        runs[name] = {"frames_per_second": summary["frames_per_second"], "wall_s": wall,
                      "frames": summary["frames"], "load_average_1min": load}
        print(name, runs[name], flush=True)
    write_results(args.json, "fleet_throughput", {"drives": args.drives,
                                                  "frames_per_drive": args.frames,
                                                  "input_size": "224x448", "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
