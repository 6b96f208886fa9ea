"""`ood-perception evaluate`: pixel and component metrics of a model or of saved score maps.

The flags become an `evaluation.evaluate.EvaluationConfig` and a score `Source`; the two-pass
engine lives in `evaluation/evaluate.py`. With `--ray` the dataset's frames are shards on Ray
workers (`fleet/evaluate.py`) and the merged figures equal the local run's. S2M's own AuIoU /
best IoU / mean F1 (per image, over 101 thresholds of `--sweep-range`) are reported beside
SMIYC's; with `--refine s2m` the frames are also refined with SAM and the S2M maps get the
pixel, component (obstacle mask: map > 0) and S2M metrics side by side with the raw score's.
A model run on one machine also reports its frames per second (`speed` in the JSON).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ood_perception.cli.arguments import (
    add_refine_arguments,
    add_runtime_arguments,
    check_output,
    refine_config,
    refiner_options,
    runtime_options,
)
from ood_perception.cli.fleet_args import add_fleet_arguments, fleet_config
from ood_perception.errors import ConfigurationError
from ood_perception.evaluation.datasets import (
    FORMATS,
    LabelSpec,
    open_dataset,
)
from ood_perception.evaluation.evaluate import (
    TRACKS,
    EvaluationConfig,
    Source,
    evaluate,
    model_source,
    refined_model_source,
    saved_source,
    writing,
)
from ood_perception.evaluation.report import figure


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
    add_runtime_arguments(parser)
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
        choices=TRACKS,
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
        help="score range of the 100-threshold AuIoU / mean F1 sweeps (S2M's: the dataset's "
        "score minimum and maximum)",
    )
    add_refine_arguments(parser)
    add_fleet_arguments(parser)
    parser.add_argument(
        "--shard-frames",
        type=int,
        default=64,
        help="with --ray: dataset frames per shard (default 64)",
    )


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
        return saved_source(args.scores, args.labels, label_spec(args), args.label_suffix)
    if args.model is None or args.dataset is None:
        raise ConfigurationError("--model and --dataset go together")
    if not args.model.is_file():
        raise ConfigurationError(f"model file {args.model} does not exist")
    refining = refine_config(args) if hasattr(args, "refine") else None  # calibrate: none
    options = runtime_options(args)
    dataset = open_dataset(args.dataset, args.dataset_format, label_spec(args), args.label_suffix)
    from ood_perception.backends import create_backend
    from ood_perception.core.pipeline import Pipeline
    from ood_perception.core.postprocess import PostprocessConfig
    from ood_perception.core.refine import open_refiner

    backend = create_backend(args.backend, str(args.model), **options)
    if refining is None:
        pipeline = Pipeline(backend, PostprocessConfig())
        return model_source(args.model.name, dataset,
                            lambda rgb: pipeline.process([rgb])[0].anomaly_score)
    # SAM on the anomaly backend's runtime and device.
    refiner = open_refiner(args.sam, refining, args.backend, backend.device, args.s2m_detector,
                           backend.info.score_range, **refiner_options(args))
    pipeline = Pipeline(backend, PostprocessConfig(), refiner=refiner)

    def process(rgb):
        result = pipeline.process([rgb])[0]
        return result.anomaly_score, result.s2m_score

    return refined_model_source(args.model.name, dataset, process)


def evaluation_config(args: argparse.Namespace) -> EvaluationConfig:
    """The engine's settings from the flags; output paths checked before any frame is read."""
    if args.save_scores is not None and args.scores is not None:
        raise ConfigurationError(
            "--save-scores keeps a model's score maps; with --scores there are none to keep")
    if args.refine != "none" and args.model is None:
        raise ConfigurationError("--refine s2m refines a model's frames: give --model and "
                                 "--dataset")
    refine_config(args)
    for flag, path, folder in (("--json", args.json, False), ("--report", args.report, True),
                               ("--save-scores", args.save_scores, True)):
        if path is not None:
            check_output(flag, path, folder)
    config = EvaluationConfig(
        component_threshold=args.component_threshold, track=args.track,
        components=not args.no_components, key_precision=args.key_precision,
        sweep_range=tuple(args.sweep_range), report=args.report, worst=args.worst,
        save_scores=args.save_scores)
    config.validate({field: f"--{field.replace('_', '-')}" for field in
                     ("component_threshold", "sweep_range", "track")})
    return config


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
    if "components" in results:
        c = results["components"]
        print(
            f"  components at {figure(c['threshold'], '.6g')}: sIoU {figure(c['siou_gt'])}"
            f"  PPV {figure(c['ppv'])}  mean F1 {figure(c['f1_mean'])}"
        )
    if "speed" in results:
        speed = results["speed"]
        print(f"  {speed['frames_per_second']:.2f} frames/s ({speed['ms_per_frame']:.0f} ms per "
              f"frame through the pipeline, {speed['backend']})")
    if "s2m" in results:
        _print_s2m("  S2M metrics", results["s2m"])
    if "refined" in results:
        r = results["refined"]
        print(f"refined by S2M (SAM masks): AP {figure(r['ap'])}  AUROC {figure(r['auroc'])}"
              f"  FPR95 {figure(r['fpr95'])}")
        if "components" in r:
            c = r["components"]
            print(f"  components of the refined mask: sIoU {figure(c['siou_gt'])}"
                  f"  PPV {figure(c['ppv'])}  mean F1 {figure(c['f1_mean'])}")
        _print_s2m("  S2M metrics", r["s2m"])


def _print_s2m(title: str, s2m: dict) -> None:
    """S2M's per-image metrics, named apart from SMIYC's sIoU / F1."""
    lo, hi = s2m["range"]
    print(f"{title} (per-image IoU / F1 over 101 thresholds in [{lo:g}, {hi:g}]): "
          f"AuIoU {figure(s2m['auiou'])}  best IoU {figure(s2m['best_iou'])}"
          f"  mean F1 {figure(s2m['mean_f1'])}")


def evaluate_on_fleet(args: argparse.Namespace, config: EvaluationConfig) -> dict:
    """`--ray`: the model on the dataset's frames, spread over Ray workers."""
    from ood_perception.fleet.evaluate import evaluate_dataset
    from ood_perception.fleet.spec import PipelineSpec

    fleet = fleet_config(args)
    if args.scores is not None or args.labels is not None:
        raise ConfigurationError("--ray spreads a model's scoring; precomputed --scores are "
                                 "evaluated without it")
    if args.model is None or args.dataset is None:
        raise ConfigurationError("--ray needs --model and --dataset")
    if args.refine != "none":
        raise ConfigurationError("--refine s2m runs on one machine; leave out --ray")
    if not args.model.is_file():
        raise ConfigurationError(f"model file {args.model} does not exist")
    if args.shard_frames < 1:
        raise ConfigurationError(f"--shard-frames must be >= 1, got {args.shard_frames}")
    runtime_options(args, local=False)
    dataset = open_dataset(args.dataset, args.dataset_format, label_spec(args), args.label_suffix)
    spec = PipelineSpec(str(args.model.absolute()), args.backend, device=args.device,
                        precision=args.precision)
    return evaluate_dataset(args.model.name, dataset, spec, config, fleet, args.shard_frames)


def run(args: argparse.Namespace) -> int:
    from ood_perception.evaluation.report import write_json

    config = evaluation_config(args)
    if args.ray is not None:
        results = evaluate_on_fleet(args, config)
    else:
        fleet_config(args)  # spreading flags without --ray are refused
        results = evaluate(open_source(args), config)
        if "speed" in results:
            results["speed"]["backend"] = args.backend
    print_summary(results)
    if args.json:
        with writing(args.json):
            write_json(results, args.json)
    return 0
