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
