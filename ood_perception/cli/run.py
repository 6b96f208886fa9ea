"""`ood-perception run`: score images, folders or videos without ROS, through `Pipeline`.

Writes `<stem>_score.npy` (float32 at the frame's size), `<stem>_mask.png`,
`<stem>_overlay.png` and, with --save-semantic, `<stem>_semantic.png` per frame. With
`--refine s2m` the mask and overlay outlines come from SAM's masks, and `<stem>_s2m.npy` holds
the S2M map (float32 in [0, 1]).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

from ood_perception.backends import create_backend
from ood_perception.cli.arguments import (
    add_refine_arguments,
    add_runtime_arguments,
    check_output,
    model_info_of,
    refine_config,
    refiner_options,
    runtime_options,
)
from ood_perception.core.pipeline import STAGES, FrameResult, Pipeline
from ood_perception.core.postprocess import PostprocessConfig
from ood_perception.core.refine import REFINE_STAGES, open_refiner
from ood_perception.errors import ConfigurationError
from ood_perception.io.images import count_frames, frame_sources, read_frames
from ood_perception.ros.parameters import resolved_threshold


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders of images, or video files")
    parser.add_argument("--model", required=True, help="contract ONNX (or backend model file)")
    add_runtime_arguments(parser)
    parser.add_argument("--output", required=True, help="folder for the written maps")
    parser.add_argument("--threshold", type=float, default=None,
                        help="score threshold (default: midpoint of the graph's score_range)")
    parser.add_argument("--min-area", type=int, default=PostprocessConfig.min_obstacle_area,
                        help="smallest obstacle in pixels (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=1,
                        help="frames per backend call (default: %(default)s)")
    parser.add_argument("--save-semantic", action="store_true",
                        help="also write <stem>_semantic.png (class ids)")
    add_refine_arguments(parser)


def _check_output(output: Path, sources: list[tuple[str, Path]]) -> None:
    """Written maps must never replace an input, nor become inputs of a later run."""
    check_output("--output", output, folder=True)
    if any(path.parent.resolve() == output.resolve() for _, path in sources):
        raise ConfigurationError(f"--output {output} holds input files; write the maps to "
                                 "another folder")


def _write(output: Path, stem: str, frame: np.ndarray, result: FrameResult,
           pipeline: Pipeline, save_semantic: bool) -> None:
    np.save(output / f"{stem}_score.npy", result.anomaly_score)
    cv2.imwrite(str(output / f"{stem}_mask.png"), result.mask)
    cv2.imwrite(str(output / f"{stem}_overlay.png"), pipeline.overlay(frame, result))
    if save_semantic and result.semantic is not None:
        cv2.imwrite(str(output / f"{stem}_semantic.png"), result.semantic)
    if result.s2m_score is not None:
        np.save(output / f"{stem}_s2m.npy", result.s2m_score)


def run_files(args: argparse.Namespace) -> dict:
    """Process every input frame; return the summary (frames, ms per stage, obstacles)."""
    from tqdm import tqdm

    if args.batch < 1:
        raise ConfigurationError(f"--batch must be >= 1, got {args.batch}")
    sources = frame_sources(args.inputs)
    output = Path(args.output)
    _check_output(output, sources)
    refining = refine_config(args)
    options = runtime_options(args, batch=args.batch)
    info = model_info_of(args.model)
    if info is not None:  # a missing threshold is said before the model loads
        resolved_threshold(math.nan if args.threshold is None else float(args.threshold), info,
                           "pass --threshold")
    backend = create_backend(args.backend, args.model, **options)
    refiner = None
    try:
        threshold = resolved_threshold(
            math.nan if args.threshold is None else float(args.threshold), backend.info,
            "pass --threshold")
        if refining is not None:
            refiner = open_refiner(args.sam, refining, args.backend, backend.device,
                                   args.s2m_detector, backend.info.score_range,
                                   **refiner_options(args, batch=args.batch))
        pipeline = Pipeline(backend, PostprocessConfig(
            score_threshold=threshold, min_obstacle_area=args.min_area), refiner=refiner)
        output.mkdir(parents=True, exist_ok=True)
        stages = STAGES + (REFINE_STAGES if refiner is not None else ())
        batch_stages = ("preprocess", "inference", "sam_encoder", "sam_decoder")
        totals = dict.fromkeys(stages, 0.0)
        frames = obstacles = 0
        pending: list[tuple[str, np.ndarray]] = []
        progress = tqdm(total=count_frames(sources), unit="frame", file=sys.stderr)

        def flush() -> None:
            nonlocal frames, obstacles
            results = pipeline.process([frame for _, frame in pending])
            for stage in totals:
                if stage in batch_stages:
                    totals[stage] += results[0].timings[stage]
                else:
                    totals[stage] += sum(result.timings[stage] for result in results)
            for (stem, frame), result in zip(pending, results, strict=True):
                obstacles += len(result.obstacles)
                _write(output, stem, frame, result, pipeline, args.save_semantic)
            frames += len(pending)
            progress.update(len(pending))
            pending.clear()

        with progress:
            for item in read_frames(sources):
                pending.append(item)
                if len(pending) == args.batch:
                    flush()
            if pending:
                flush()
    finally:
        backend.close()
        if refiner is not None:
            refiner.runner.close()
    mean_ms = {stage: total / max(frames, 1) for stage, total in totals.items()}
    return {"frames": frames, "mean_ms": mean_ms, "obstacles": obstacles,
            "threshold": threshold, "output": str(output), "refine": args.refine}


def run(args: argparse.Namespace) -> int:
    summary = run_files(args)
    stages = ", ".join(f"{stage} {ms:.1f}" for stage, ms in summary["mean_ms"].items())
    print(f"{summary['frames']} frames -> {summary['output']} (threshold "
          f"{summary['threshold']:g}); mean ms per frame: {stages}; "
          f"obstacles found: {summary['obstacles']}")
    return 0
