"""Options shared by `train-segmentor` and `train-uem`: model, data, optimiser, validation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ood_perception.backends.device import DEVICE_HELP
from ood_perception.cli.arguments import image_size
from ood_perception.errors import ConfigurationError


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="uem-demo",
                        help="uem-demo (default) or uem-dinov2-s/b/l (official sizes)")
    parser.add_argument("--variant", default="dd", choices=("dd", "gd", "gg"),
                        help="heads (segmentor, UEM): dd linear/linear, gd GMM/linear, gg GMM/GMM")
    parser.add_argument("--window", type=image_size,
                        help="training window HxW; default the model's (demo 336x672, DINOv2 "
                        "518x1036); multiples of 14")
    parser.add_argument("--output", required=True, help="checkpoint to write (.ckpt)")


def add_data_arguments(parser: argparse.ArgumentParser, labels_required: bool) -> None:
    parser.add_argument("--synthetic", type=int, default=600,
                        help="number of synthetic scenes to train on (used without --images)")
    parser.add_argument("--images", help="folder of training images (searched recursively)")
    parser.add_argument("--labels", help="folder of Cityscapes train-id label PNGs matched by "
                        "name" + (" (required with --images)" if labels_required else
                                  "; optional: objects are then pasted on the road"))
    parser.add_argument("--image-suffix", default="",
                        help="image name ending to drop when matching labels, e.g. _leftImg8bit")
    parser.add_argument("--label-suffix", default="",
                        help="label name ending, e.g. _gtFine_labelTrainIds")
    parser.add_argument("--scene-size", type=image_size,
                        help="HxW the synthetic scenes are rendered at, then scaled to the "
                        "window (default: the model's camera, demo 224x448; else the window)")
    parser.add_argument("--min-scale", type=float, default=1.0,
                        help="random rescale range; 1 scales the image height to the window")
    parser.add_argument("--max-scale", type=float, default=1.0, help="see --min-scale")


def add_optim_arguments(parser: argparse.ArgumentParser, steps: int, lr: float,
                        weight_decay: float) -> None:
    parser.add_argument("--steps", type=int, default=steps, help="optimiser steps")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step")
    parser.add_argument("--lr", type=float, default=lr, help="peak AdamW learning rate")
    parser.add_argument("--weight-decay", type=float, default=weight_decay, help="AdamW decay")
    parser.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, data and order")
    parser.add_argument("--device", default="cpu", help=DEVICE_HELP)
    parser.add_argument("--val", type=int,
                        help="held-out synthetic scenes to evaluate on after training (default "
                        "40 when training on synthetic scenes, else 0)")
    parser.add_argument("--metrics-json", help="write the training and evaluation figures here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def optim_config(args: argparse.Namespace):
    from ood_perception.training.uem import OptimConfig

    return OptimConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                       weight_decay=args.weight_decay, warmup=min(args.warmup, args.steps - 1),
                       seed=args.seed, device=args.device)


def resolve_model(args: argparse.Namespace):
    """(UEMConfig, window, synthetic scene size) of --model/--variant/--window/--scene-size,
    checked."""
    from ood_perception.training.uem import model_config

    cfg, window, camera = model_config(args.model, args.variant)
    window = tuple(args.window or window)
    scene = tuple(args.scene_size or camera or window)
    patch = cfg.vit.patch_size
    if window[0] % patch or window[1] % patch or min(window) < patch:
        raise ConfigurationError(f"--window {window[0]}x{window[1]} must be a positive "
                                 f"multiple of the patch size {patch}")
    return cfg, window, scene


def samples(args: argparse.Namespace, scene: tuple[int, int], labels_required: bool):
    """The training samples: an image folder or synthetic scenes rendered at `scene` (HxW);
    and whether synthetic."""
    from ood_perception.training.data import FolderSamples, synthetic_samples

    if not 0 < args.min_scale <= args.max_scale:
        raise ConfigurationError(f"need 0 < --min-scale <= --max-scale, got {args.min_scale} "
                                 f"and {args.max_scale}")
    if args.images:
        if labels_required and not args.labels:
            raise ConfigurationError("--images needs --labels (Cityscapes train-id PNGs)")
        return FolderSamples(args.images, args.labels, args.image_suffix,
                             args.label_suffix), False
    if args.labels:
        raise ConfigurationError("--labels needs --images")
    if args.synthetic < 1:
        raise ConfigurationError(f"--synthetic must be at least 1, got {args.synthetic}")
    return synthetic_samples(args.synthetic, args.seed, scene,
                             progress=not args.no_progress), True


def validation_count(args: argparse.Namespace, synthetic: bool) -> int:
    count = args.val if args.val is not None else (40 if synthetic else 0)
    if count < 0:
        raise ConfigurationError(f"--val must be >= 0, got {count}")
    return count


def run_figures(checkpoint, steps: int, result) -> dict:
    """The card's training figures: checkpoint, steps, seconds, mean loss of the first and
    last ten steps (`result`: a training run's `losses` and `seconds`)."""
    return {"checkpoint": str(checkpoint), "steps": steps, "seconds": result.seconds,
            "loss_start": sum(result.losses[:10]) / len(result.losses[:10]),
            "loss_end": sum(result.losses[-10:]) / len(result.losses[-10:])}


def write_metrics(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=1))


def run_and_report(command: str, train, args: argparse.Namespace, held_out) -> int:
    """Run `train(args)`, print its one-line summary (plus `held_out(figures)`), exit code."""
    figures = train(args)
    line = (f"wrote {figures['checkpoint']}: {figures['steps']} steps in "
            f"{figures['seconds']:.0f} s, loss {figures['loss_start']:.3f} -> "
            f"{figures['loss_end']:.3f}")
    print(line + held_out(figures))
    return 0
