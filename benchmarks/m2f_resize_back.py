"""Mask2Former with the official test resize: the official order (`--resize-back masks`)
against resizing only the score (`--resize-back score`), in memory, time and score.

For each order a child process builds the random-weight model (seeded, so both are the same
network), scores one random camera frame in PyTorch on CPU and saves the score; its peak
resident set size comes from the kernel's accounting of that child (`os.wait4`). Then the
two scores are compared: the largest difference as a fraction of the official score's range,
and the intersection over union of the two maps' top 5% pixels.

Run: .venv/bin/python benchmarks/m2f_resize_back.py [--model uno-m2f-swin-t] \
        [--input-size 1080x1920] [--folder /tmp/m2f_resize_back]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from record import add_json_argument, write_results

ROOT = Path(__file__).resolve().parents[1]

SCORE_ONE_FRAME = """
import sys, time
import numpy as np
import torch
from ood_perception.models.registry import ExportRequest, build_model
model, height, width, order, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:]
deploy = build_model(ExportRequest(model=model, random_init=True, input_size=(height, width),
                                   test_resize=True, resize_back=order))
image = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
start = time.perf_counter()
with torch.inference_mode():
    score = deploy(torch.from_numpy(image))[0][0].numpy()
print(f"{order}: network {deploy.info.tiling['test_resize']['network_size']}, "
      f"forward {time.perf_counter() - start:.1f} s")
np.save(out, score)
"""


def _child(command: list[str]) -> tuple[int, float, float]:
    """(exit code, peak RSS in GB, wall seconds) of `command` run to its end."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    return (os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1e6,  # KiB -> GB
            time.perf_counter() - start)


def top_iou(a: np.ndarray, b: np.ndarray, fraction: float = 0.05) -> float:
    """IoU of the pixels in the top `fraction` of each score map (float [H, W])."""
    mask_a = a >= np.quantile(a, 1 - fraction)
    mask_b = b >= np.quantile(b, 1 - fraction)
    return float((mask_a & mask_b).sum() / (mask_a | mask_b).sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="uno-m2f-swin-t", help="registered uno-m2f-* model")
    parser.add_argument("--input-size", default="1080x1920", help="camera frame HxW")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/m2f_resize_back"),
                        help="where the two scores are saved")
    add_json_argument(parser, "m2f_resize_back")
    args = parser.parse_args()
    height, width = (int(side) for side in args.input_size.split("x"))
    args.folder.mkdir(parents=True, exist_ok=True)
    scores, figures = {}, {"model": args.model, "input_size": args.input_size, "orders": {}}
    for order in ("masks", "score"):
        out = args.folder / f"{order}.npy"
        code, peak, wall = _child([sys.executable, "-c", SCORE_ONE_FRAME, args.model,
                                   str(height), str(width), order, str(out)])
        print(f"--resize-back {order}: peak RSS {peak:.2f} GB, {wall:.0f} s, exit {code}",
              flush=True)
        if code != 0:
            return code
        scores[order] = np.load(out)
        figures["orders"][order] = {"peak_rss_gb": round(peak, 2), "seconds": round(wall, 1)}
    official, cheap = scores["masks"], scores["score"]
    spread = float(np.ptp(official))
    figures["max_difference_of_range"] = float(np.abs(cheap - official).max() / spread)
    figures["top5_iou"] = float(top_iou(official, cheap))
    print(f"{args.model} at {args.input_size}: max |score - official| = "
          f"{figures['max_difference_of_range']:.2g} of the official range "
          f"({spread:.3g}), top-5% IoU {figures['top5_iou']:.4f}")
    write_results(args.json, "m2f_resize_back", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
