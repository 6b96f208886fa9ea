"""Argument types and checks shared by the CLI tools."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ood_perception.errors import ConfigurationError


def image_size(text: str) -> tuple[int, int]:
    """`HxW` (e.g. 1024x2048) -> (height, width), both positive."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 1024x2048, got {text!r}") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return height, width


def check_output(flag: str, path: str | Path, folder: bool) -> None:
    """Refuse an output that cannot be written before any work is done: the wrong kind where
    it exists, or no writable folder where it would be made."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind = "folder" if folder else "file"
        raise ConfigurationError(f"{flag} {path} exists and is not a {kind}")
    parent = path if folder else path.parent
    existing = next(p for p in (parent.absolute(), *parent.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigurationError(f"{flag} {path}: {existing} is not a writable folder")


def add_refine_arguments(parser: argparse.ArgumentParser) -> None:
    """S2M refinement flags (`run`, `evaluate`): SAM's graphs and where box prompts come from."""
    from ood_perception.models.s2m import REFINE_MODES
    from ood_perception.models.s2m.proposals import ProposalConfig

    refine = parser.add_argument_group("S2M refinement (whole-object masks from SAM)")
    refine.add_argument("--refine", choices=REFINE_MODES, default="none",
                        help="none (default): the thresholded score is the mask; s2m: SAM's "
                        "masks of box prompts from the score are")
    refine.add_argument("--sam", help="SAM image-encoder graph from `export --model sam-...` "
                        "(the decoder graph beside it; the .pt beside it for --backend torch)")
    refine.add_argument("--s2m-detector", help="S2M's detectron2 box detector checkpoint: "
                        "prompts from it on the score map (default: from the score's "
                        "components)")
    refine.add_argument("--s2m-score-scale", type=float, default=1.0,
                        help="the detector sees the score times this (default: %(default)s)")
    refine.add_argument("--max-boxes", type=int, default=ProposalConfig.max_boxes,
                        help="component prompts per frame (default: %(default)s)")


def refine_config(args: argparse.Namespace):
    """The `RefineConfig` the refine flags ask for (None without --refine s2m), checked before
    any work is done."""
    from ood_perception.core.refine import RefineConfig

    if args.refine == "none":
        used = [flag for flag, value in (("--sam", args.sam),
                                         ("--s2m-detector", args.s2m_detector)) if value]
        if used:
            raise ConfigurationError(f"{', '.join(used)} need --refine s2m")
        return None
    if not args.sam:
        raise ConfigurationError("--refine s2m needs --sam (SAM's graphs from `ood-perception "
                                 "export --model sam-vit-b` or mobile-sam)")
    for flag, value in (("--sam", args.sam), ("--s2m-detector", args.s2m_detector)):
        if value and not Path(value).is_file():
            raise ConfigurationError(f"{flag} file not found: {value}")
    return RefineConfig.s2m(bool(args.s2m_detector), args.max_boxes, args.s2m_score_scale)


def add_runtime_arguments(parser: argparse.ArgumentParser,
                          backends: tuple[str, ...] | None = None,
                          default_backend: str = "onnxruntime") -> None:
    """`--backend` (with its choices), `--device` and `--precision`: the same three flags on
    every command that runs a model (`runtime_options` checks them)."""
    from ood_perception.backends import BACKENDS, PRECISIONS
    from ood_perception.backends.device import DEVICE_HELP

    choices = backends or tuple(sorted(BACKENDS))
    precisions = sorted({p for kind in choices for p in PRECISIONS[kind]})
    per_backend = "; ".join(f"{kind}: {', '.join(PRECISIONS[kind]) or 'the graph as exported'}"
                            for kind in choices)
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--backend", choices=choices, default=default_backend,
                         help="inference runtime (default: %(default)s)")
    runtime.add_argument("--device", default=None,
                         help=f"{DEVICE_HELP} (default: the backend's own, cuda for tensorrt)")
    runtime.add_argument("--precision", choices=precisions or None, default=None,
                         help=f"{per_backend} (default: the backend's first)")


def runtime_options(args: argparse.Namespace, batch: int | None = None,
                    local: bool = True) -> dict:
    """`create_backend` keyword arguments from the runtime flags, checked here, before any
    model loads or Ray cluster starts: a device string, a device the backend cannot use, a
    precision it does not run. `batch`: frames per call (the `BATCH_SIZED` backends' start-up);
    `local`: the model runs in this process (not on Ray workers), so the device must be here.
    """
    from ood_perception.backends import BATCH_SIZED, PRECISIONS
    from ood_perception.backends.device import parse_device

    options: dict = {}
    device = None
    if args.device is not None:
        device = parse_device(args.device, "--device")
        options["device"] = str(device)
    allowed = PRECISIONS[args.backend]
    if args.precision is not None:
        if args.precision not in allowed:
            runs = ", ".join(allowed) if allowed else "only the graph as exported (no --precision)"
            raise ConfigurationError(f"--backend {args.backend} runs {runs}; got --precision "
                                     f"{args.precision}")
        options["precision"] = args.precision
    if args.backend == "tensorrt" and device is not None and not device.is_cuda:
        raise ConfigurationError(f"--backend tensorrt runs on cuda, not --device {device}")
    if args.backend in BATCH_SIZED and batch is not None:
        options["max_batch"] = batch
    if not local:
        return options
    if args.backend == "torch":
        from ood_perception.backends.torch import check_target

        check_target(str(device or "cpu"), args.precision or allowed[0])
    elif device is not None and device.is_cuda:
        _check_cuda_visible(device)
    return options


def refiner_options(args: argparse.Namespace, batch: int | None = None) -> dict:
    """Keyword arguments of SAM's runner beyond its device (the anomaly backend's): the same
    precision and, on TensorRT, the same batch."""
    options: dict = {}
    if args.precision is not None and args.backend != "onnxruntime":
        options["precision"] = args.precision
    if args.backend == "tensorrt" and batch is not None:
        options["max_batch"] = batch
    return options


def _check_cuda_visible(device) -> None:
    """A CUDA device ONNX Runtime or TensorRT cannot have on this machine, said now."""
    try:
        import torch
    except ImportError:  # without torch, the runtime itself reports it when it starts
        return
    count = torch.cuda.device_count()
    if count == 0 or (device.index is not None and device.index >= count):
        raise ConfigurationError(f"--device {device}: this machine has {count} CUDA device(s)")


def model_info_of(path: str | Path):
    """The contract metadata of an exported `.onnx` (read without loading its weights), or
    None for other files (the backend reads them)."""
    from ood_perception.contract import ModelInfo

    path = Path(path)
    if path.suffix != ".onnx" or not path.is_file():
        return None
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    try:
        return ModelInfo.from_metadata({p.key: p.value for p in model.metadata_props},
                                       (dims[1], dims[2]))
    except (KeyError, ValueError, IndexError):
        return None
