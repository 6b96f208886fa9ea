"""Argument types shared by the CLI tools."""

from __future__ import annotations

import argparse


def image_size(text: str) -> tuple[int, int]:
    """`HxW` (e.g. 1024x2048) -> (height, width), both positive."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 1024x2048, got {text!r}") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return height, width
