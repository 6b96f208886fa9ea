"""Camera frames as `Pipeline.process` takes them, decoded only as far as the model needs.

A bgr8 frame stays a checked view of the camera's bytes (`BgrFrame`): the pipeline resizes
it to the model input and swaps channels on the small image. Resizing works per channel, so
that equals converting first, bit for bit, and saves a full-size colour conversion per frame
(1.3 ms at 1920x1080); the full-size RGB image is made only for an overlay.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from ood_perception.core.codec import decode_image
from ood_perception.errors import ImageDecodeError


@dataclass(frozen=True)
class BgrFrame:
    """uint8 HxWx3 pixels in BGR order, usually a view of a message's data (rows may be
    strided); the pipeline converts only what it needs."""

    pixels: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.pixels.shape

    def rgb(self) -> np.ndarray:
        """The whole frame as a new HxWx3 RGB array."""
        return cv2.cvtColor(self.pixels, cv2.COLOR_BGR2RGB)


Frame = np.ndarray | BgrFrame


@functools.lru_cache(maxsize=64)
def _reversed_rgb(encoding: str) -> bool:
    """Whether the codec decodes `encoding` by reversing 3-byte pixels (bgr8 and its aliases);
    the codec itself is asked, with one pixel, so the two never disagree."""
    try:
        pixel = decode_image(encoding, 1, 1, 3, b"\x01\x02\x03")
    except ImageDecodeError:
        return False
    return pixel.reshape(-1).tolist() == [3, 2, 1]


def camera_frame(encoding: str, height: int, width: int, step: int,
                 data: bytes | memoryview | np.ndarray, is_bigendian: int = 0) -> Frame:
    """`sensor_msgs/Image` fields -> a frame for `Pipeline.process`, checked as `decode_image`
    checks it (a malformed frame raises `ImageDecodeError` here, before any batch).

    rgb8 is a view of `data`, bgr8 a `BgrFrame` view; other encodings are decoded to RGB.
    """
    if _reversed_rgb(encoding):
        return BgrFrame(decode_image("rgb8", height, width, step, data))
    return decode_image(encoding, height, width, step, data, is_bigendian)


def frame_size(frame: Frame) -> tuple[int, int]:
    """(height, width) of a frame."""
    return tuple(frame.shape[:2])
