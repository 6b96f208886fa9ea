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
