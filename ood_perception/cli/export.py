"""`ood-perception export`: a registered model (official checkpoint or random init) -> ONNX.

Writes the contract graph (and with --save-torch the `.pt` deploy file beside it), then runs
PyTorch and, once the PyTorch model is freed, ONNX Runtime on random frames and prints the
largest score difference. SAM models (`sam-vit-b`, `sam-vit-l`, `sam-vit-h`, `mobile-sam`)
write S2M's two graphs instead: the image encoder at --output and the prompt-and-mask decoder
beside it (`<output stem>.decoder.onnx`); `s2m-detector` writes S2M's box detector on score
maps of --input-size.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

from ood_perception.cli.arguments import check_output, image_size
from ood_perception.errors import ConfigurationError
from ood_perception.models.s2m import DETECTOR_MODEL
from ood_perception.models.sam import MODEL_NAMES as SAM_MODELS

# Flags that only the UEM and DOoD families (`uem-*`, `dood-*`) understand.
UEM_ONLY_FLAGS = {"segmentor_checkpoint": "--segmentor-checkpoint"}
# Flags that only the UEM sliding windows (`uem-*`) understand.
UEM_WINDOW_FLAGS = {"window_chunk": "--window-chunk"}
# Flags that only the DOoD family (`dood-*`) understands.
DOOD_ONLY_FLAGS = {"timesteps": "--timesteps", "timestep_weighting": "--timestep-weighting",
                   "dood_stats": "--dood-stats"}
# Flags that mean nothing to SAM's graphs.
NOT_FOR_SAM = {"variant": "--variant", "score": "--score", "window": "--window",
               "stride": "--stride", "single_window": "--single-window",
               "segmentor_checkpoint": "--segmentor-checkpoint", "window_chunk": "--window-chunk",
               "test_resize": "--test-resize", "resize_back": "--resize-back"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="registered model name, e.g. uem-dinov2-b or uno-m2f-swin-l; "
                        f"S2M's SAM graphs: {', '.join(SAM_MODELS)}; S2M's box detector: "
                        f"{DETECTOR_MODEL}")
    parser.add_argument("--variant", help="UEM heads: dd, gd or gg (default dd); Mask2Former "
                        "class head for --random-init: uno (K+2, default) or closed (K+1)")
    parser.add_argument("--checkpoint",
                        help="official checkpoint: UEM .ckpt, Mask2Former .pkl/.pth, DOoD "
                        "diffusion *_diff.pth, SAM .pth (segment-anything) / .pt (MobileSAM), "
                        "or S2M's detectron2 detector")
    parser.add_argument("--segmentor-checkpoint",
                        help="UEM: segmentor .ckpt; fills only the segmentor tensors the "
                        "UEM .ckpt lacks (its own win, as in the official evaluation) and "
                        "tensors that differ between the two files are reported; DOoD: the "
                        "segmentor (*_segm.pth, or a UEM .ckpt for dood-uem-*)")
    parser.add_argument("--random-init", action="store_true",
                        help="random weights (for shape, speed and export tests)")
    parser.add_argument("--score", help="anomaly score; UEM: llr (default), max_softmax, "
                        "max_logit, energy, uem_out; Mask2Former: uno (default), eam, rba, msp")
    parser.add_argument("--input-size", type=image_size, required=True,
                        help="graph input HxW, e.g. 1024x2048 (SAM: the anomaly graph's)")
    parser.add_argument("--window", type=image_size,
                        help="sliding-window HxW (UEM default 518x1036)")
    parser.add_argument("--stride", type=int, help="sliding-window stride (UEM default 140)")
    parser.add_argument("--single-window", action="store_true",
                        help="resize the whole frame to one window instead of sliding")
    parser.add_argument("--window-chunk", type=int,
                        help="UEM sliding windows: run the network on this many windows of a "
                        "frame at a time (a divisor of the window count; default all at "
                        "once); bounds the graph's memory, same scores")
    parser.add_argument("--test-resize", action=argparse.BooleanOptionalAction,
                        help="Mask2Former: resize inside the graph as detectron2's test path "
                        "does (short side 1024, long side at most 2048, PIL bilinear), run the "
                        "network there and resize the outputs back to --input-size; default: "
                        "on with --checkpoint, off with --random-init")
    parser.add_argument("--resize-back", choices=("masks", "score"),
                        help="with --test-resize: resize every query's mask logits to the "
                        "input size before scoring (masks, official, default) or the score "
                        "and class map only (score: less memory, not the official order)")
    parser.add_argument("--timesteps", type=int,
                        help="DOoD: diffusion steps t = 0..N-1 in the score (default 25; fewer "
                        "is faster, the paper's runtime table uses 5 to 25)")
    parser.add_argument("--timestep-weighting", choices=("official", "eq8"),
                        help="DOoD: sum the steps as the official code (default) or weight "
                        "them by sqrt(1 - abar_t) as the paper's eq. 8")
    parser.add_argument("--dood-stats",
                        help="DOoD: in-distribution statistics JSON of the compound score "
                        "(written by `ood-perception dood-stats` or `train-dood`)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-init")
    parser.add_argument("--output", required=True, help="ONNX file to write")
    parser.add_argument("--save-torch", action="store_true",
                        help="also write the PyTorch deploy file <output>.pt")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17)")
    parser.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                        help="torch.onnx exporter; auto = dynamo, TorchScript if dynamo fails")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the ONNX Runtime comparison")


def _check_flags(args: argparse.Namespace) -> None:
    for families, flags in ((("uem-", "dood-"), UEM_ONLY_FLAGS), (("uem-",), UEM_WINDOW_FLAGS),
                            (("dood-",), DOOD_ONLY_FLAGS)):
        used = [flag for name, flag in flags.items() if getattr(args, name) is not None]
        if used and not args.model.startswith(families):
            raise ConfigurationError(f"{', '.join(used)} apply only to "
                                     f"{' and '.join(f + '*' for f in families)} models, "
                                     f"not {args.model}")
    embedded = args.model.endswith("-demo")
    if args.random_init == bool(args.checkpoint) and not (embedded and not args.random_init):
        raise ConfigurationError("give exactly one of --checkpoint and --random-init")
    if args.segmentor_checkpoint and not args.checkpoint and not embedded:
        raise ConfigurationError("--segmentor-checkpoint needs --checkpoint (the UEM .ckpt or "
                                 "the DOoD diffusion .pth)")
    for flag, value in (("--checkpoint", args.checkpoint),
                        ("--segmentor-checkpoint", args.segmentor_checkpoint),
                        ("--dood-stats", args.dood_stats)):
        if value and not Path(value).is_file():
            raise ConfigurationError(f"{flag} file not found: {value}")
    check_output("--output", args.output, folder=False)
    for flag, value in (("--stride", args.stride), ("--window-chunk", args.window_chunk)):
        if value is not None and value <= 0:
            raise ConfigurationError(f"{flag} must be positive, got {value}")


def _dood_stats(path: str | None) -> dict | None:
    """The content of a `dood-stats` file, checked, for the export request."""
    if path is None:
        return None
    from ood_perception.models.dood.compound import read_statistics

    return read_statistics(path).to_dict()


def export_sam(args: argparse.Namespace) -> None:
    """SAM's encoder and decoder graphs (and with --save-torch the `.pt`), checked in ONNX
    Runtime with 0, 1 and 17 boxes unless --no-check."""
    from ood_perception.export.s2m import check_sam_onnxruntime, export_sam
    from ood_perception.models.sam.checkpoints import load_sam_checkpoint
    from ood_perception.models.sam.deploy import save_sam_deploy, torch_path_for
    from ood_perception.models.sam.sam import Sam, sam_config

    used = [flag for name, flag in NOT_FOR_SAM.items() if getattr(args, name)]
    if used:
        raise ConfigurationError(f"{', '.join(used)} do not apply to SAM models")
    import torch

    start = time.perf_counter()
    torch.manual_seed(args.seed)
    sam = Sam(sam_config(args.model))
    if args.checkpoint:
        load_sam_checkpoint(sam, args.checkpoint)
    sam.eval()
    built = time.perf_counter()
    encoder, decoder = export_sam(sam, args.model, args.input_size, args.output, args.opset)
    exported = time.perf_counter()
    print(f"wrote {encoder} ({encoder.stat().st_size / 1e6:.1f} MB, {args.model} image "
          f"encoder) and {decoder} ({decoder.stat().st_size / 1e6:.1f} MB, prompt-and-mask "
          f"decoder); build {built - start:.1f} s, export {exported - built:.1f} s")
    if args.save_torch:
        saved = save_sam_deploy(sam, args.model, args.input_size, torch_path_for(encoder))
        print(f"wrote {saved}")
    if not args.no_check:
        diffs = check_sam_onnxruntime(encoder, sam, args.input_size, seed=args.seed + 1)
        print("onnxruntime vs torch: max |diff| " + ", ".join(
            f"{name} {value:.3g}" for name, value in diffs.items())
              + f" ({time.perf_counter() - exported:.1f} s)")


def export_detector(args: argparse.Namespace) -> None:
    """S2M's detector graph (score map [1, H, W] -> boxes, scores, classes), checked in ONNX
    Runtime on a random score map unless --no-check."""
    import numpy as np
    import torch

    from ood_perception.export.s2m import check_detector_onnxruntime, export_detector
    from ood_perception.models.s2m.checkpoints import load_detector_checkpoint
    from ood_perception.models.s2m.detector import ScoreBoxDetector

    used = [flag for name, flag in NOT_FOR_SAM.items() if getattr(args, name)]
    if used or args.save_torch:
        raise ConfigurationError(f"{', '.join(used or ['--save-torch'])} do not apply to "
                                 f"{DETECTOR_MODEL}")
    torch.manual_seed(args.seed)
    detector = ScoreBoxDetector()
    if args.checkpoint:
        load_detector_checkpoint(detector, args.checkpoint)
    start = time.perf_counter()
    path = export_detector(detector.eval(), args.input_size, args.output, args.opset)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {DETECTOR_MODEL} on "
          f"{args.input_size[0]}x{args.input_size[1]} score maps); export "
          f"{time.perf_counter() - start:.1f} s")
    if not args.no_check:
        rng = np.random.default_rng(args.seed + 1)
        score = rng.normal(size=(1, *args.input_size)).astype(np.float32)
        print(f"onnxruntime vs torch: {check_detector_onnxruntime(path, detector, score)}")


def run(args: argparse.Namespace) -> int:
    _check_flags(args)
    if args.model == DETECTOR_MODEL:
        export_detector(args)
        return 0
    if args.model in SAM_MODELS:
        export_sam(args)
        return 0
    from ood_perception.export.onnx import (
        export_onnx,
        onnxruntime_scores,
        sample_images,
        torch_scores,
    )
    from ood_perception.models.deploy_file import save_torch_deploy
    from ood_perception.models.registry import ExportRequest, build_model

    request = ExportRequest(
        model=args.model, variant=args.variant, checkpoint=args.checkpoint,
        segmentor_checkpoint=args.segmentor_checkpoint, random_init=args.random_init,
        score=args.score, input_size=args.input_size, window=args.window,
        stride=args.stride, single_window=args.single_window, seed=args.seed,
        timesteps=args.timesteps, timestep_weighting=args.timestep_weighting,
        dood_stats=_dood_stats(args.dood_stats), window_chunk=args.window_chunk,
        test_resize=args.test_resize, resize_back=args.resize_back)
    start = time.perf_counter()
    deploy = build_model(request)
    built = time.perf_counter()
    path = export_onnx(deploy, args.output, opset=args.opset, exporter=args.exporter)
    exported = time.perf_counter()
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {deploy.info.model_name}, "
          f"score {deploy.info.score_name}, tiling {deploy.info.tiling}); "
          f"build {built - start:.1f} s, export {exported - built:.1f} s")
    if args.save_torch:
        torch_path = save_torch_deploy(deploy, request, path.with_suffix(".pt"))
        print(f"wrote {torch_path}")
    if not args.no_check:
        images = sample_images(deploy.info, batch=1, seed=args.seed + 1)
        reference = torch_scores(deploy, images)
        del deploy  # the PyTorch weights go before ONNX Runtime loads its own
        gc.collect()
        diff = float(abs(onnxruntime_scores(path, images) - reference).max())
        print(f"onnxruntime vs torch: max |score diff| = {diff:.3g} "
              f"({time.perf_counter() - exported:.1f} s)")
    return 0
