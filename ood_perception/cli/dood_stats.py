"""`ood-perception dood-stats`: the DOoD compound score's in-distribution statistics.

The compound score standardises its two parts, S = 1 - logsumexp(logits) and the diffusion
score E, with their means and standard deviations on in-distribution images (the official
evaluation measures them on 25 training images; they are not in the checkpoints). This runs
the model as `export` would build it (same checkpoints, input size, coverage, time steps)
over your images and writes the JSON that `export --dood-stats` reads.
"""

from __future__ import annotations

import argparse

from ood_perception.cli import training_args as common
from ood_perception.cli.arguments import check_output, image_size
from ood_perception.errors import ConfigurationError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="a dood-* model, e.g. dood-segmenter-b or dood-demo")
    parser.add_argument("--segmentor-checkpoint", help="segmentor (*_segm.pth, UEM .ckpt)")
    parser.add_argument("--checkpoint", help="diffusion model (*_diff.pth, train-dood's .pth)")
    parser.add_argument("--variant", help="DINOv2 models: the segmentor head (dd, gd, gg)")
    parser.add_argument("--input-size", type=image_size, required=True,
                        help="graph input HxW, as for export")
    parser.add_argument("--window", type=image_size, help="DINOv2 models: window HxW")
    parser.add_argument("--stride", type=int, help="DINOv2 models: sliding-window stride")
    parser.add_argument("--single-window", action="store_true",
                        help="DINOv2 models: one window over the resized frame")
    parser.add_argument("--timesteps", type=int, default=25, help="diffusion steps (1..1000)")
    parser.add_argument("--timestep-weighting", choices=("official", "eq8"), default="official",
                        help="sum the steps as the official code (default) or eq. 8")
    common.add_data_arguments(parser, labels_required=False)
    parser.add_argument("--count", type=int, default=25,
                        help="in-distribution images to measure on (official: 25)")
    parser.add_argument("--seed", type=int, default=0, help="which images (and the scenes)")
    parser.add_argument("--output", required=True, help="statistics JSON to write")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(synthetic=None)


def run(args: argparse.Namespace) -> int:
    check_output("--output", args.output, folder=False)
    if not args.model.startswith("dood-"):
        raise ConfigurationError(f"dood-stats applies to dood-* models, not {args.model}")
    if args.synthetic is None:
        args.synthetic = args.count
    from ood_perception.models.dood.compound import write_statistics
    from ood_perception.models.registry import ExportRequest, build_model
    from ood_perception.training.dood import measure_statistics

    request = ExportRequest(
        model=args.model, variant=args.variant, checkpoint=args.checkpoint,
        segmentor_checkpoint=args.segmentor_checkpoint, score="diffusion",
        input_size=args.input_size, window=args.window, stride=args.stride,
        single_window=args.single_window, timesteps=args.timesteps,
        timestep_weighting=args.timestep_weighting)
    deploy = build_model(request)
    data, _ = common.samples(args, args.scene_size or args.input_size, labels_required=False)
    stats = measure_statistics(deploy, data, args.count, args.seed,
                               progress=not args.no_progress)
    path = write_statistics(stats, args.output)
    print(f"wrote {path}: S = 1 - logsumexp {stats.logsumexp_mean:.4g} +- "
          f"{stats.logsumexp_std:.4g}, E {stats.diffusion_mean:.4g} +- "
          f"{stats.diffusion_std:.4g} over {stats.images} images ({stats.timesteps} steps, "
          f"{stats.weighting})")
    return 0
