"""Frames as RGB arrays, to compare what `camera_frame` keeps with the decoded image."""

from __future__ import annotations

import numpy as np

from ood_perception.core.frames import BgrFrame, Frame


def to_rgb(frame: Frame) -> np.ndarray:
    """A frame as an HxWx3 RGB array (converted only for a `BgrFrame`)."""
    return frame.rgb() if isinstance(frame, BgrFrame) else frame
