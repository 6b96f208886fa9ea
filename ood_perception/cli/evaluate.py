"""`ood-perception evaluate`: pixel and component metrics of a model or of saved score maps.

Two passes: the first streams every frame into the exact pixel accumulator (AP, AUROC,
FPR95) and finds the best-F1 pixel threshold; the second computes the SMIYC component
metrics at that threshold (SMIYC's own choice) from the same score maps (re-read from
disk, or cached as .npy while the model runs). `--component-threshold` makes it one pass.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ood_perception.cli.arguments import check_output
from ood_perception.errors import ConfigurationError, OodPerceptionError
from ood_perception.evaluation.component_metrics import ComponentConfig, ComponentMetrics
from ood_perception.evaluation.datasets import (
    FORMATS,
    Dataset,
    LabelSpec,
    load_score_label,
    open_dataset,
    score_label_pairs,
)
from ood_perception.evaluation.pixel_metrics import PixelMetrics
from ood_perception.evaluation.report import figure

Frame = tuple[str, "np.ndarray | None", np.ndarray, np.ndarray]  # name, rgb, score, label
# metrics.py follows the benchmarks (FPR95 1.0, sweep 0.0) on a set without anomaly pixels
UNDEFINED_WITHOUT_ANOMALIES = ("fpr95", "auiou", "mean_f1")


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
    dataset: Dataset | None = None  # the labels of a model run's second pass
    # Seconds per frame the model run spent in the pipeline (decode excluded); empty otherwise.
    seconds: list[float] = field(default_factory=list)


@dataclass
class ScoreCache:
    """A model's pass-one score maps on disk, listed in frame order for the second pass."""

    folder: Path
    named: bool  # --save-scores: <name>.npy; otherwise <index>.npy, which never collide
    paths: list[Path] = field(default_factory=list)

    def save(self, name: str, score: np.ndarray) -> None:
        """Keep one frame's map; pass two reads `paths` in this order, never by name."""
        path = self.folder / f"{name if self.named else len(self.paths)}.npy"
        with _writing(path):
            np.save(path, score)
        self.paths.append(path)


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
    seconds: list[float] = []

    def scored() -> Iterator[Frame]:
        from ood_perception.backends import create_backend
        from ood_perception.core.pipeline import Pipeline
        from ood_perception.core.postprocess import PostprocessConfig

        pipeline = Pipeline(create_backend(args.backend, str(args.model)), PostprocessConfig())
        for name, rgb, label in dataset:
            start = time.perf_counter()
            result = pipeline.process([rgb])[0]
            seconds.append(time.perf_counter() - start)
            yield name, rgb, np.asarray(result.anomaly_score, np.float32), label

    return Source(
        f"{args.model.name} on {args.dataset} ({dataset.format})",
        dataset.track,
        len(dataset),
        scored,
        dataset,
        seconds,
    )


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse flags that would give meaningless figures or fail late, before any frame is read."""
    threshold = args.component_threshold
    if threshold is not None and not math.isfinite(threshold):
        raise ConfigurationError(f"--component-threshold must be a finite number, not {threshold}")
    lo, hi = args.sweep_range
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigurationError(f"--sweep-range needs finite LO < HI, not {lo} {hi}")
    if args.save_scores is not None and args.scores is not None:
        raise ConfigurationError(
            "--save-scores keeps a model's score maps; with --scores there are none to keep"
        )
    for flag, path, folder in (
        ("--json", args.json, False),
        ("--report", args.report, True),
        ("--save-scores", args.save_scores, True),
    ):
        if path is not None:
            check_output(flag, path, folder)


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """An OSError while writing an output ends the run with one line naming the output."""
    try:
        yield
    except OSError as error:
        raise ConfigurationError(f"cannot write {path}: {error}") from error


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
    from ood_perception.evaluation.report import WorstFrames, write_markdown

    pixels = PixelMetrics(key_dtype=args.key_precision)
    worst = WorstFrames(args.worst if args.report else 0)
    track = source.track if args.track == "auto" else args.track
    inline = None
    if not args.no_components and args.component_threshold is not None:
        inline = ComponentMetrics(ComponentConfig.for_track(track, args.component_threshold))
    with _score_cache(args) as cache:
        for name, rgb, score, label in _progress(source.frames(), source.count, "evaluate"):
            pixels.update(score, label)
            if worst.count:
                worst.offer(name, frame_ap(score, label), rgb, score, label)
            if inline is not None:
                inline.update(score, label)
            if cache is not None:
                cache.save(name, score)
        components = inline
        if not args.no_components and inline is None:
            best = pixels.best_f1_point()
            threshold = best.threshold if best is not None else float("inf")
            components = ComponentMetrics(ComponentConfig.for_track(track, threshold))
            frames = source.frames() if cache is None else _cached(cache, source.dataset)
            for _, _, score, label in _progress(frames, source.count, "components"):
                components.update(score, label)
    results = _results(pixels, components, source, args)
    if components is not None:
        results["components"]["track"] = track
    if args.report:
        with _writing(args.report):
            write_markdown(results, pixels.curve(), worst, args.report)
    return results


@contextmanager
def _score_cache(args: argparse.Namespace) -> Iterator[ScoreCache | None]:
    """Where a model run keeps its maps for pass two: --save-scores or a temporary folder.

    None for precomputed maps, which pass two reads again from --scores.
    """
    second_pass = not args.no_components and args.component_threshold is None
    if args.model is None or (args.save_scores is None and not second_pass):
        yield None
    elif args.save_scores is not None:
        with _writing(args.save_scores):
            args.save_scores.mkdir(parents=True, exist_ok=True)
        yield ScoreCache(args.save_scores, named=True)
    else:
        with tempfile.TemporaryDirectory(
            prefix="ood_eval_scores_", ignore_cleanup_errors=True
        ) as folder:
            yield ScoreCache(Path(folder), named=False)


def _cached(cache: ScoreCache, dataset: Dataset) -> Iterator[Frame]:
    """Second pass of a model run: pass one's maps in frame order, labels read again."""
    for (name, _, label_path), path in zip(dataset.items, cache.paths, strict=True):
        yield name, None, np.load(path), dataset.label(label_path)


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
    if summary["positive_pixels"] == 0:
        results.update(dict.fromkeys(UNDEFINED_WITHOUT_ANOMALIES, float("nan")))
    if components is not None:
        results["components"] = components.summary()
    if source.seconds:
        # The first frame includes the backend's warm-up; the rate is over the others.
        steady = source.seconds[1:] or source.seconds
        results["speed"] = {"frames_per_second": len(steady) / sum(steady),
                            "ms_per_frame": 1000 * sum(steady) / len(steady),
                            "backend": args.backend}
    return results


def print_summary(results: dict) -> None:
    """The headline numbers on stdout."""
    counts = results["counts"]
    print(
        f"evaluated {counts['frames']} frames ({counts['positive_pixels']} anomaly, "
        f"{counts['negative_pixels']} inlier, {counts['ignored_pixels']} ignored pixels)"
    )
    print(
        f"  AP {figure(results['ap'])}  AUROC {figure(results['auroc'])}"
        f"  FPR95 {figure(results['fpr95'])}  AuIoU {figure(results['auiou'])}"
        f"  mean F1 {figure(results['mean_f1'])}"
    )
    if "speed" in results:
        speed = results["speed"]
        print(f"  {speed['frames_per_second']:.2f} frames/s ({speed['ms_per_frame']:.0f} ms per "
              f"frame through the pipeline, {speed['backend']})")
    if "components" in results:
        c = results["components"]
        print(
            f"  components at {figure(c['threshold'], '.6g')}: sIoU {figure(c['siou_gt'])}"
            f"  PPV {figure(c['ppv'])}  mean F1 {figure(c['f1_mean'])}"
        )


def run(args: argparse.Namespace) -> int:
    from ood_perception.evaluation.report import write_json

    try:
        check_arguments(args)
        results = evaluate(args, open_source(args))
        print_summary(results)
        if args.json:
            with _writing(args.json):
                write_json(results, args.json)
    except OodPerceptionError as error:
        print(f"ood-perception evaluate: {error}", file=sys.stderr)
        return 2
    return 0
