"""`ood-perception train-segmentor`: stage 1, the inlier segmentor (ViT + FPN + head).

Trains on synthetic scenes or on images with Cityscapes train-id labels and writes the
segmentor in the official Lightning layout (`SegmentationModel` keys). With
--backbone-checkpoint (DINOv2 hub weights) the ViT is loaded and frozen, as in the paper;
without, the small demo ViT is trained from scratch.
"""

from __future__ import annotations

import argparse

from ood_perception.cli import training_args as common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model_arguments(parser)
    common.add_data_arguments(parser, labels_required=True)
    parser.add_argument("--backbone-checkpoint",
                        help="DINOv2 weights (hub .pth state dict) for the ViT; frozen")
    parser.add_argument("--train-backbone", action="store_true",
                        help="train the ViT too when --backbone-checkpoint is given")
    common.add_optim_arguments(parser, steps=1000, lr=1e-3, weight_decay=0.01)


def train(args: argparse.Namespace) -> dict:
    """Run stage 1 and write the checkpoint; the figures as a dict."""
    from ood_perception.training import uem as training
    from ood_perception.training.data import validation_frames
    from ood_perception.training.validation import evaluate, network_predictor

    cfg, window, scene = common.resolve_model(args)
    optim = common.optim_config(args)
    training.device_of(args.device)
    data, synthetic = common.samples(args, scene, labels_required=True)
    val_count = common.validation_count(args, synthetic)
    network = training.build_network(cfg, window, args.seed, args.backbone_checkpoint)
    freeze = bool(args.backbone_checkpoint) and not args.train_backbone
    result, trainer = training.train_segmentor(
        network, data, optim, freeze_backbone=freeze, scale=(args.min_scale, args.max_scale),
        progress=not args.no_progress)
    hyper = {"MODEL": {"NAME": args.model, "VARIANT": args.variant, "WINDOW": list(window),
                       "NUM_CLASSES": cfg.num_classes, "IGNORE_INDEX": training.IGNORE,
                       "SEGMENTATION_HEAD": cfg.segmentor_head},
             "SOLVER": {"STEPS": optim.steps, "BATCH_SIZE": optim.batch_size, "LR": optim.lr,
                        "SEED": optim.seed, "FREEZE_BACKBONE": freeze},
             "DATA": {"SYNTHETIC": args.synthetic if synthetic else 0,
                      "SCENE_SIZE": list(scene) if synthetic else [],
                      "IMAGES": args.images or ""},
             "PRODUCER": "ood_perception train-segmentor"}
    path = training.save_segmentor_checkpoint(network, args.output, hyper, trainer)
    figures = common.run_figures(path, optim.steps, result)
    if val_count:
        evaluation = evaluate(network_predictor(network, args.device),
                              validation_frames(val_count, scene), progress=not args.no_progress)
        figures.update(miou=evaluation.miou, class_iou=evaluation.class_iou,
                       val_frames=val_count)
    common.write_metrics(args.metrics_json, figures)
    return figures


def _held_out(figures: dict) -> str:
    if "miou" not in figures:
        return ""
    return f"; mIoU {figures['miou'] * 100:.1f} on {figures['val_frames']} held-out scenes"


def run(args: argparse.Namespace) -> int:
    return common.run_and_report("train-segmentor", train, args, _held_out)
