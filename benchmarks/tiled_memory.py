"""Peak memory of a tiled UEM graph: exporting it, and one ONNX Runtime run of it on CPU.

Each step runs as its own child process and its peak resident set size is read from the
kernel's accounting of that child (`os.wait4`), so the figures are what the step alone needs:

    export   `ood-perception export --random-init --window-chunk N --no-check` (build + ONNX)
    check    the same export with its ONNX Runtime vs PyTorch check (only with --check)
    ort      ONNX Runtime (CPUExecutionProvider) loads the graph and scores one random frame

Run: .venv/bin/python benchmarks/tiled_memory.py [--model uem-dinov2-b] \
        [--input-size 1024x2048] [--window-chunk 3] [--folder /tmp/tiled] [--check]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from record import add_json_argument, write_results

ROOT = Path(__file__).resolve().parents[1]

ORT_RUN = """
import sys, time
import numpy as np
import onnxruntime as ort
from ood_perception.contract import INPUT_NAME, SCORE_NAME
start = time.perf_counter()
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
loaded = time.perf_counter()
shape = [side if isinstance(side, int) else 1 for side in session.get_inputs()[0].shape]
image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
score = session.run([SCORE_NAME], {INPUT_NAME: image})[0]
print(f"ort: load {loaded - start:.1f} s, run {time.perf_counter() - loaded:.1f} s, "
      f"score {score.shape} finite {bool(np.isfinite(score).all())}")
"""


def _child(command: list[str]) -> tuple[int, float, float]:
    """(exit code, peak RSS in GB, wall seconds) of `command` run to its end."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1e6, time.perf_counter() - start  # KiB->GB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="uem-dinov2-b", help="registered uem-* model")
    parser.add_argument("--input-size", default="1024x2048", help="graph input HxW")
    parser.add_argument("--window-chunk", type=int, default=3,
                        help="windows per network pass (a divisor of the window count)")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/tiled_memory"),
                        help="where the ONNX graph is written")
    parser.add_argument("--skip-export", action="store_true",
                        help="reuse the graph already in --folder")
    parser.add_argument("--check", action="store_true",
                        help="also measure an export with its ONNX Runtime vs PyTorch check")
    add_json_argument(parser, "tiled_memory")
    args = parser.parse_args()

    args.folder.mkdir(parents=True, exist_ok=True)
    graph = args.folder / f"{args.model}_{args.input_size}_chunk{args.window_chunk}.onnx"
    export = [sys.executable, "-m", "ood_perception.cli.main", "export", "--model", args.model,
              "--random-init", "--input-size", args.input_size,
              "--window-chunk", str(args.window_chunk), "--output", str(graph)]
    steps = []
    if not args.skip_export:
        steps.append(("export", export + ["--no-check"]))
    if args.check:
        steps.append(("export + check", export))
    steps.append(("onnxruntime run", [sys.executable, "-c", ORT_RUN, str(graph)]))

    print(f"{args.model} {args.input_size} --window-chunk {args.window_chunk}", flush=True)
    figures = {"model": args.model, "input_size": args.input_size,
               "window_chunk": args.window_chunk, "steps": {}}
    for name, command in steps:
        code, peak, wall = _child(command)
        print(f"{name}: peak RSS {peak:.2f} GB, {wall:.0f} s, exit {code}", flush=True)
        if code != 0:
            return code
        figures["steps"][name] = {"peak_rss_gb": round(peak, 2), "seconds": round(wall, 1)}
    figures["graph_mb"] = round(graph.stat().st_size / 1e6)
    print(f"graph: {graph} ({figures['graph_mb']} MB)")
    write_results(args.json, "tiled_memory", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
