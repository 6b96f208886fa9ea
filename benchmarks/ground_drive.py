"""Obstacles on the ground, measured on synthetic drives whose truth is known: distance error
by range (5-50 m), flicker and false obstacles per frame, with and without tracking.

Two drives through the embedded `uem-demo` model (ONNX Runtime, CPU), thresholded as the
node does by default (the midpoint of the model's score range, 100-pixel blobs):
    demo   `make demo`'s held-out drive (seed 7, 30 frames at 10 Hz, 6 m/s)
    long   `synthetic.approach_world`: 300 frames at 30 Hz, 10 m/s, a held-out obstacle every
           20 m, each seen from 50 m to 5 m
Tracking runs with the node's defaults (`TrackingConfig()`, meant for 30 Hz).

Run: .venv/bin/python benchmarks/ground_drive.py [--long-frames 300] \
        [--json benchmarks/results/ground_drive.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from record import add_json_argument, write_results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long-frames", type=int, default=300)
    parser.add_argument("--long-seed", type=int, default=11)
    add_json_argument(parser, "ground_drive")
    args = parser.parse_args()

    from ood_perception.backends import create_backend
    from ood_perception.cli.demo import export_model
    from ood_perception.core.pipeline import Pipeline
    from ood_perception.core.tracking import TrackingConfig
    from ood_perception.evaluation.ground_metrics import measure_drive
    from ood_perception.ros.parameters import postprocess_config
    from ood_perception.synthetic import scenes

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        model, note = export_model(Path(folder))
        backend = create_backend("onnxruntime", str(model), device="cpu")
        pipeline = Pipeline(backend, postprocess_config({}, backend.info))
        drives = {}
        # make demo's drive: cli/demo.py's defaults.
        world = scenes.sequence_world(7, 30, anomaly_split="heldout", fps=10.0)
        drives["demo"] = (world, scenes.drive(world, 30, 6.0, 10.0, 7),
                          {"seed": 7, "frames": 30, "fps": 10.0, "speed_m_s": 6.0})
        world = scenes.approach_world(args.long_seed, args.long_frames, speed=10.0, fps=30.0)
        drives["long"] = (world, scenes.drive(world, args.long_frames, 10.0, 30.0,
                                              args.long_seed),
                          {"seed": args.long_seed, "frames": args.long_frames, "fps": 30.0,
                           "speed_m_s": 10.0, "obstacle_spacing_m": 20.0})
        figures = {}
        for name, (world, frames, settings) in drives.items():
            began = time.perf_counter()
            figures[name] = {"drive": settings, **measure_drive(
                pipeline, frames, world.calibration)}
            figures[name]["seconds"] = time.perf_counter() - began
            print(f"{name}: {json.dumps(_headline(figures[name]))}", flush=True)
        backend.close()
    write_results(args.json, "ground_drive", {
        "model": f"uem-demo ({note})", "threshold": pipeline.config.score_threshold,
        "min_obstacle_area": pipeline.config.min_obstacle_area,
        "tracking": asdict(TrackingConfig()), "seconds": time.perf_counter() - start,
        **figures})
    return 0


def _headline(figures: dict) -> dict:
    return {mode: {"median_error_m_by_range": [b["distance_error_median_m"]
                                               for b in figures[mode]["by_range"]],
                   "flicker": figures[mode]["flicker_events"],
                   "false_per_frame": figures[mode]["false_obstacles_per_frame"]}
            for mode in ("raw", "tracked")}


if __name__ == "__main__":
    sys.exit(main())
