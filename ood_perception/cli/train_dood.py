"""`ood-perception train-dood`: the DOoD denoiser on a frozen segmentor's features.

In-distribution images only (synthetic scenes without anomalies, or an image folder;
labels optional, void cells are left out). Writes the diffusion model in the official
`*_diff.pth` layout and, beside it, the compound score's in-distribution statistics
(`<output>.stats.json`, from 25 of the training images as the official evaluation does), so
`ood-perception export --model M --segmentor-checkpoint S --checkpoint D.pth --dood-stats
D.stats.json` exports it. With synthetic scenes it also scores held-out scenes with unseen
anomaly families.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from ood_perception.backends.device import DEVICE_HELP
from ood_perception.cli import training_args as common
from ood_perception.cli.arguments import check_output, image_size
from ood_perception.errors import ConfigurationError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="dood-demo",
                        help="dood-demo (default: on the embedded UEM demo segmentor), "
                        "dood-uem-dinov2-s/b/l, dood-segmenter-b, dood-setr-l, "
                        "dood-setr-l-ade20k")
    parser.add_argument("--segmentor-checkpoint",
                        help="frozen segmentor: UEM segmentor or UEM .ckpt (DINOv2 models), "
                        "official *_segm.pth (Segmenter, SETR); dood-demo: the embedded one")
    parser.add_argument("--variant", default="dd", choices=("dd", "gd", "gg"),
                        help="DINOv2 models: the segmentor head, linear (dd) or GMM (gd, gg)")
    parser.add_argument("--window", type=image_size,
                        help="segmentor input HxW while collecting features (default: demo "
                        "336x672, DINOv2 518x1036, Segmenter/SETR 1024x2048)")
    parser.add_argument("--output", required=True, help="diffusion checkpoint to write (.pth)")
    parser.add_argument("--half", action="store_true",
                        help="store the denoiser's weights as fp16 (half the file)")
    parser.add_argument("--denoiser-channels", type=int,
                        help="denoiser width (default: the feature width, as the paper)")
    parser.add_argument("--levels", type=int, default=6,
                        help="denoiser input (= output) blocks (the Cityscapes models: 6)")
    parser.add_argument("--middle-blocks", type=int, default=3,
                        help="denoiser middle blocks (the Cityscapes models: 3)")
    common.add_data_arguments(parser, labels_required=False)
    parser.add_argument("--feature-images", type=int,
                        help="images whose features are collected (default: every sample once)")
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps")
    parser.add_argument("--batch-size", type=int, default=1024,
                        help="features per step (the paper: 4096)")
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="peak AdamW learning rate (the paper: 5e-5 over 70k steps)")
    parser.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    parser.add_argument("--train-timesteps", type=int, default=1000,
                        help="draw training time steps t from 0..N-1 (default 1000: the whole "
                        "schedule, the paper's recipe; the score only looks at the first "
                        "--timesteps, so a short training can spend itself there)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, data and order")
    parser.add_argument("--device", default="cpu", help=DEVICE_HELP)
    parser.add_argument("--timesteps", type=int, default=25,
                        help="diffusion steps of the score the statistics are measured for")
    parser.add_argument("--timestep-weighting", choices=("official", "eq8"), default="official",
                        help="sum the steps as the official code (default) or eq. 8")
    parser.add_argument("--stats-images", type=int, default=25,
                        help="training images for the compound score's statistics")
    parser.add_argument("--val", type=int,
                        help="held-out synthetic scenes to evaluate on after training (default "
                        "40 when training on synthetic scenes, else 0)")
    parser.add_argument("--metrics-json", help="write the training and evaluation figures here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def stats_path(output: str | Path) -> Path:
    """Where train-dood writes the statistics of `output`: `<output stem>.stats.json`."""
    return Path(output).with_suffix(".stats.json")


def _segmentor_checkpoint(args: argparse.Namespace) -> str:
    if args.segmentor_checkpoint:
        if not Path(args.segmentor_checkpoint).is_file():
            raise ConfigurationError(f"--segmentor-checkpoint file not found: "
                                     f"{args.segmentor_checkpoint}")
        return args.segmentor_checkpoint
    if args.model != "dood-demo":
        raise ConfigurationError(f"--model {args.model} needs --segmentor-checkpoint")
    from ood_perception.models.uem.demo import DEMO_CHECKPOINT

    return str(DEMO_CHECKPOINT)


def train(args: argparse.Namespace) -> dict:
    """Collect features, train, write the checkpoint and statistics; the figures as a dict."""
    from ood_perception.models.dood.compound import write_statistics
    from ood_perception.models.registry import build_model
    from ood_perception.training import dood as training
    from ood_perception.training.data import validation_frames
    from ood_perception.training.uem import OptimConfig
    from ood_perception.training.validation import deploy_predictor, evaluate

    window, camera = training.model_defaults(args.model)
    window = tuple(args.window or window)
    scene = tuple(args.scene_size or camera or window)
    check_output("--output", args.output, folder=False)
    segmentor = _segmentor_checkpoint(args)
    optim = OptimConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                        weight_decay=0.0, warmup=min(args.warmup, args.steps - 1),
                        seed=args.seed, device=args.device)
    training.device_of(args.device)
    data, synthetic = common.samples(args, scene, labels_required=False)
    val_count = common.validation_count(args, synthetic)
    count = args.feature_images or len(data)
    network = training.frozen_network(
        args.model, window, segmentor, args.seed, args.variant,
        model_channels=args.denoiser_channels, levels=args.levels,
        middle_blocks=args.middle_blocks)
    bank = training.collect_features(network, data, window, count, args.seed, args.device,
                                     scale=(args.min_scale, args.max_scale),
                                     progress=not args.no_progress)
    result = training.train_denoiser(network.diffusion, bank, optim, args.train_timesteps,
                                     progress=not args.no_progress)
    meta = {"producer": "ood_perception train-dood", "model": args.model,
            "segmentor_checkpoint": str(segmentor), "window": list(window),
            "feature_images": count, "features": int(bank.features.shape[0]),
            "steps": optim.steps, "batch_size": optim.batch_size, "lr": optim.lr,
            "train_timesteps": args.train_timesteps,
            "seed": optim.seed, "synthetic": args.synthetic if synthetic else 0,
            "images": args.images or ""}
    path = training.save_diffusion_checkpoint(network.diffusion, bank, args.output, meta,
                                              half=args.half)
    request = training.deploy_request(
        args.model, scene, window, variant=args.variant, segmentor_checkpoint=segmentor,
        checkpoint=str(path), timesteps=args.timesteps,
        timestep_weighting=args.timestep_weighting, score="diffusion")
    stats = training.measure_statistics(build_model(request), data, args.stats_images, args.seed,
                                        progress=not args.no_progress)
    written = write_statistics(stats, stats_path(path))
    figures = {**common.run_figures(path, optim.steps, result), "statistics": str(written),
               "features": int(bank.features.shape[0]),
               **{f"stats_{k}": v for k, v in stats.to_dict().items() if k != "format"}}
    if val_count:
        deploy = build_model(replace(request, score="compound", dood_stats=stats.to_dict()))
        evaluation = evaluate(deploy_predictor(deploy), validation_frames(val_count, scene),
                              progress=not args.no_progress)
        figures.update(evaluation.as_dict())
    common.write_metrics(args.metrics_json, figures)
    return figures


def _held_out(figures: dict) -> str:
    line = f"; statistics {figures['statistics']}"
    if "ap" in figures:
        line += (f"; held-out anomalies ({figures['frames']} scenes): AP "
                 f"{figures['ap'] * 100:.1f}, FPR95 {figures['fpr95'] * 100:.1f}, "
                 f"mIoU {figures['miou'] * 100:.1f}")
    return line


def run(args: argparse.Namespace) -> int:
    return common.run_and_report("train-dood", train, args, _held_out)
