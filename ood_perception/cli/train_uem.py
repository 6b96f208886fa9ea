"""`ood-perception train-uem`: stage 2, the UEM on top of a frozen segmentor checkpoint.

Inlier images (synthetic scenes or any image folder) get negative objects pasted in (the
synthetic training anomaly families, a folder of cut-outs, or COCO instances); the UEM
learns from BCE on the LLR score (plus the GMM terms for a GMM head). The result is a UEM
checkpoint in the official layout, with the frozen segmentor inside, so
`ood-perception export --model M --checkpoint U.ckpt` loads it.
"""

from __future__ import annotations

import argparse

from ood_perception.cli import training_args as common
from ood_perception.errors import ConfigurationError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model_arguments(parser)
    parser.add_argument("--segmentor-checkpoint", required=True,
                        help="frozen segmentor .ckpt (official layout or train-segmentor's)")
    common.add_data_arguments(parser, labels_required=False)
    parser.add_argument("--negatives", default="synthetic",
                        help="objects to paste: 'synthetic' (the training anomaly families, "
                        "default) or a folder of RGBA PNG cut-outs / images/ + masks/")
    parser.add_argument("--coco-annotations",
                        help="COCO instances JSON to paste objects from (instead of --negatives)")
    parser.add_argument("--coco-images", help="image folder of --coco-annotations")
    parser.add_argument("--paste-prob", type=float, default=0.9,
                        help="probability that an image gets objects pasted")
    parser.add_argument("--max-objects", type=int, default=3, help="objects per image, at most")
    parser.add_argument("--min-object-size", type=int, default=12,
                        help="pasted objects are at least this many pixels on their short side")
    common.add_optim_arguments(parser, steps=1000, lr=5e-4, weight_decay=0.0)


def negative_set(args: argparse.Namespace):
    from ood_perception.training.negatives import CocoInstances, CutoutFolder, SyntheticNegatives

    if args.coco_annotations or args.coco_images:
        if not (args.coco_annotations and args.coco_images):
            raise ConfigurationError("--coco-annotations and --coco-images go together")
        return CocoInstances(args.coco_annotations, args.coco_images)
    if args.negatives == "synthetic":
        return SyntheticNegatives("train")
    return CutoutFolder(args.negatives)


def train(args: argparse.Namespace) -> dict:
    """Run stage 2 and write the checkpoint; the figures as a dict."""
    from ood_perception.training import uem as training
    from ood_perception.training.data import validation_frames
    from ood_perception.training.validation import evaluate, network_predictor

    cfg, window, scene = common.resolve_model(args)
    optim = common.optim_config(args)
    training.device_of(args.device)
    negatives = negative_set(args)
    network = training.build_network(cfg, window, args.seed)
    segmentor_state = training.load_segmentor(network, args.segmentor_checkpoint)
    data, synthetic = common.samples(args, scene, labels_required=False)
    val_count = common.validation_count(args, synthetic)
    result, trainer = training.train_uem(
        network, data, negatives, optim, paste_prob=args.paste_prob,
        max_objects=args.max_objects, scale=(args.min_scale, args.max_scale),
        min_size=args.min_object_size,
        progress=not args.no_progress)
    hyper = {"MODEL": {"NAME": args.model, "VARIANT": args.variant, "WINDOW": list(window),
                       "SEGMENTOR_CKPT": str(args.segmentor_checkpoint),
                       "OOD_HEAD": cfg.uem_head, "IGNORE_INDEX": training.IGNORE},
             "SOLVER": {"STEPS": optim.steps, "BATCH_SIZE": optim.batch_size, "LR": optim.lr,
                        "SEED": optim.seed},
             "DATA": {"SYNTHETIC": args.synthetic if synthetic else 0,
                      "SCENE_SIZE": list(scene) if synthetic else [],
                      "IMAGES": args.images or "", "PASTE_PROB": args.paste_prob,
                      "MAX_OBJECTS": args.max_objects, "MIN_OBJECT_SIZE": args.min_object_size,
                      "NEGATIVES": args.coco_annotations or args.negatives},
             "PRODUCER": "ood_perception train-uem"}
    path = training.save_uem_checkpoint(network, segmentor_state, args.output, hyper, trainer)
    figures = common.run_figures(path, optim.steps, result)
    if val_count:
        evaluation = evaluate(network_predictor(network, args.device),
                              validation_frames(val_count, scene), progress=not args.no_progress)
        figures.update(evaluation.as_dict())
    common.write_metrics(args.metrics_json, figures)
    return figures


def _held_out(figures: dict) -> str:
    if "ap" not in figures:
        return ""
    return (f"; held-out anomalies ({figures['frames']} scenes): AP "
            f"{figures['ap'] * 100:.1f}, FPR95 {figures['fpr95'] * 100:.1f}, "
            f"mIoU {figures['miou'] * 100:.1f}")


def run(args: argparse.Namespace) -> int:
    return common.run_and_report("train-uem", train, args, _held_out)
