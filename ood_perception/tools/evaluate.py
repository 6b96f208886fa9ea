"""`ood-perception evaluate`: pixel and component metrics of a model or of saved score maps.

Two passes: the first streams every frame into the exact pixel accumulator (AP, AUROC,
FPR95) and finds the best-F1 pixel threshold; the second computes the SMIYC component
metrics at that threshold (SMIYC's own choice) from the same score maps (re-read from
disk, or cached as .npy while the model runs). `--component-threshold` makes it one pass.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ood_perception.component_metrics import ComponentConfig, ComponentMetrics
from ood_perception.datasets import (
    FORMATS,
    LabelSpec,
    load_score_label,
    open_dataset,
    read_label,
    score_label_pairs,
)
from ood_perception.errors import ConfigurationError, OodPerceptionError
from ood_perception.metrics import PixelMetrics

Frame = tuple[str, "np.ndarray | None", np.ndarray, np.ndarray]  # name, rgb, score, label


def _values(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from error
    if any(not 0 <= v <= 255 for v in values):
        raise argparse.ArgumentTypeError(f"label values must be 0..255: {text!r}")
    return values


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Where scores come from: a model on a dataset, or precomputed maps; shared with calibrate."""
    model = parser.add_argument_group("model on a labelled dataset")
    model.add_argument("--model", type=Path, help="exported contract model (.onnx)")
    model.add_argument("--dataset", type=Path, help="dataset root folder")
    model.add_argument(
        "--dataset-format",
        default="auto",
        choices=("auto", *FORMATS),
        help="dataset layout (default: detected from the folders)",
    )
    model.add_argument(
        "--backend",
        default="onnxruntime",
        help="inference backend: onnxruntime, torch or tensorrt",
    )
    saved = parser.add_argument_group("precomputed score maps of any method")
    saved.add_argument("--scores", type=Path, help="folder of .npy float score maps (HxW)")
    saved.add_argument("--labels", type=Path, help="folder of label PNGs, same stems as --scores")
    labels = parser.add_argument_group("label values (--labels and --dataset-format folder)")
    labels.add_argument(
        "--label-suffix", default="", help="label file stem = score/image stem + this suffix"
    )
    labels.add_argument(
        "--inlier-values",
        type=_values,
        default=(0,),
        help="raw label values meaning inlier (comma list, default 0)",
    )
    labels.add_argument(
        "--anomaly-values",
        type=_values,
        default=(1,),
        help="raw label values meaning anomaly (default 1)",
    )
    labels.add_argument(
        "--ignore-values",
        type=_values,
        default=(255,),
        help="raw label values to ignore (default 255)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--json", type=Path, help="write the results as JSON to this file")
    out.add_argument(
        "--report",
        type=Path,
        help="write report.md, PR/ROC curves (PNG) and worst frames to this folder",
    )
    out.add_argument("--worst", type=int, default=8, help="worst frames shown in the report")
    out.add_argument(
        "--save-scores", type=Path, help="also keep the model's score maps as .npy in this folder"
    )
    metrics = parser.add_argument_group("metrics")
    metrics.add_argument(
        "--component-threshold",
        type=float,
        help="pixel threshold for component metrics (default: best pixel F1)",
    )
    metrics.add_argument(
        "--track",
        default="auto",
        choices=("auto", "anomaly", "obstacle"),
        help="SMIYC size thresholds: anomaly 500/100 px, obstacle 50/10 px",
    )
    metrics.add_argument(
        "--no-components", action="store_true", help="skip the component metrics (one pass)"
    )
    metrics.add_argument(
        "--key-precision",
        default="float32",
        choices=("float32", "float16"),
        help="score keys of the exact accumulator (float16 bounds memory)",
    )
    metrics.add_argument(
        "--sweep-range",
        type=float,
        nargs=2,
        default=(0.0, 1.0),
        metavar=("LO", "HI"),
        help="score range of the 100-threshold AuIoU / mean F1 sweep",
    )


@dataclass
class Source:
    """Frames of scores and labels, iterable more than once."""

    name: str
    track: str
    count: int
    frames: object  # () -> Iterator[Frame]


def label_spec(args: argparse.Namespace) -> LabelSpec:
    return LabelSpec(args.inlier_values, args.anomaly_values, args.ignore_values)


def open_source(args: argparse.Namespace) -> Source:
    """The score source the flags describe; exactly one of model+dataset or scores+labels."""
    by_model = args.model is not None or args.dataset is not None
    by_scores = args.scores is not None or args.labels is not None
    if by_model == by_scores:
        raise ConfigurationError("give either --model and --dataset, or --scores and --labels")
    if by_scores:
        if args.scores is None or args.labels is None:
            raise ConfigurationError("--scores and --labels go together")
        pairs = score_label_pairs(args.scores, args.labels, label_spec(args), args.label_suffix)
        spec = label_spec(args)

        def saved() -> Iterator[Frame]:
            for name, score_path, label_path in pairs:
                score, label = load_score_label(score_path, label_path, spec)
                yield name, None, score, label

        return Source(str(args.scores), "anomaly", len(pairs), saved)
    if args.model is None or args.dataset is None:
        raise ConfigurationError("--model and --dataset go together")
    if not args.model.is_file():
        raise ConfigurationError(f"model file {args.model} does not exist")
    dataset = open_dataset(args.dataset, args.dataset_format, label_spec(args), args.label_suffix)

    def scored() -> Iterator[Frame]:
        from ood_perception.backends import create_backend
        from ood_perception.pipeline import Pipeline
        from ood_perception.postprocess import PostprocessConfig

        pipeline = Pipeline(create_backend(args.backend, str(args.model)), PostprocessConfig())
        for name, rgb, label in dataset:
            result = pipeline.process([rgb])[0]
            yield name, rgb, np.asarray(result.anomaly_score, np.float32), label

    return Source(
        f"{args.model.name} on {args.dataset} ({dataset.format})",
        dataset.track,
        len(dataset),
        scored,
    )


def _progress(iterable, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="frame", file=sys.stderr)


def frame_ap(score: np.ndarray, label: np.ndarray) -> float:
    """AP of one frame alone (NaN without anomaly pixels), to rank the worst frames."""
    single = PixelMetrics()
    single.update(score, label)
    return single.ap()


def evaluate(args: argparse.Namespace, source: Source) -> dict:
    """Both passes; returns the results dict (also what `--json` writes)."""
    from ood_perception.report import WorstFrames, write_markdown

    pixels = PixelMetrics(key_dtype=args.key_precision)
    worst = WorstFrames(args.worst if args.report else 0)
    cache = args.save_scores
    temporary = None
    needs_cache = (
        not args.no_components and args.component_threshold is None and args.model is not None
    )
    if needs_cache and cache is None:
        temporary = tempfile.mkdtemp(prefix="ood_eval_scores_")
        cache = Path(temporary)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    track = source.track if args.track == "auto" else args.track
    inline = None
    if not args.no_components and args.component_threshold is not None:
        inline = ComponentMetrics(ComponentConfig.for_track(track, args.component_threshold))
    names = []
    try:
        for name, rgb, score, label in _progress(source.frames(), source.count, "evaluate"):
            pixels.update(score, label)
            names.append(name)
            if worst.count:
                worst.offer(name, frame_ap(score, label), rgb, score, label)
            if inline is not None:
                inline.update(score, label)
            if cache is not None and args.model is not None:
                np.save(cache / f"{name}.npy", score)
        components = inline
        if not args.no_components and inline is None:
            best = pixels.best_f1_point()
            threshold = best.threshold if best is not None else float("inf")
            components = ComponentMetrics(ComponentConfig.for_track(track, threshold))
            frames = source.frames() if args.model is None else _cached(cache, args)
            for _, _, score, label in _progress(frames, source.count, "components"):
                components.update(score, label)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    results = _results(pixels, components, source, args)
    if components is not None:
        results["components"]["track"] = track
    if args.report:
        write_markdown(results, pixels.curve(), worst, args.report)
    return results


def _cached(cache: Path, args: argparse.Namespace) -> Iterator[Frame]:
    """Second pass of a model run: the cached maps with labels read again from the dataset."""
    dataset = open_dataset(args.dataset, args.dataset_format, label_spec(args), args.label_suffix)
    for name, _, label_path in dataset.items:
        label = dataset.spec.convert(read_label(label_path), str(label_path))
        yield name, None, np.load(cache / f"{name}.npy"), label


def _results(pixels: PixelMetrics, components, source: Source, args) -> dict:
    summary = pixels.summary()
    at95 = pixels.point_at_tpr(0.95)
    best = pixels.best_f1_point()
    results = {
        "source": source.name,
        "ap": summary["ap"],
        "auroc": summary["auroc"],
        "fpr95": summary["fpr95"],
        "best_iou": summary["best_iou"],
        **pixels.threshold_sweep(*args.sweep_range),
        "thresholds": {
            "tpr95": at95.threshold if at95 else None,
            "best_f1": best.threshold if best else None,
            "best_f1_value": best.f1 if best else None,
        },
        "counts": {
            k: summary[k]
            for k in (
                "frames",
                "positive_pixels",
                "negative_pixels",
                "ignored_pixels",
                "distinct_scores",
            )
        },
        "key_precision": args.key_precision,
    }
    if components is not None:
        results["components"] = components.summary()
    return results


def print_summary(results: dict) -> None:
    """The headline numbers on stdout."""
    counts = results["counts"]
    print(
        f"evaluated {counts['frames']} frames ({counts['positive_pixels']} anomaly, "
        f"{counts['negative_pixels']} inlier, {counts['ignored_pixels']} ignored pixels)"
    )
    print(
        f"  AP {results['ap']:.4f}  AUROC {results['auroc']:.4f}  FPR95 {results['fpr95']:.4f}"
        f"  AuIoU {results['auiou']:.4f}  mean F1 {results['mean_f1']:.4f}"
    )
    if "components" in results:
        c = results["components"]
        print(
            f"  components at {c['threshold']:.6g}: sIoU {c['siou_gt']:.4f}  PPV {c['ppv']:.4f}"
            f"  mean F1 {c['f1_mean']:.4f}"
        )


def run(args: argparse.Namespace) -> int:
    from ood_perception.report import write_json

    try:
        source = open_source(args)
        results = evaluate(args, source)
    except OodPerceptionError as error:
        print(f"ood-perception evaluate: {error}", file=sys.stderr)
        return 2
    print_summary(results)
    if args.json:
        write_json(results, args.json)
    return 0
