"""frames: camera frames left undecoded where that is exact, checked like the codec checks."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from frame_pixels import to_rgb

from ood_perception.core.codec import decode_image
from ood_perception.core.frames import BgrFrame, camera_frame, frame_size
from ood_perception.errors import ImageDecodeError

RNG = np.random.default_rng(0)


def message_fields(pixels: np.ndarray, pad: int = 0) -> tuple[int, array.array]:
    """(step, data) of an image message holding `pixels` (HxWxC uint8), rows padded."""
    rows = pixels.reshape(pixels.shape[0], -1)
    rows = np.concatenate([rows, np.full((rows.shape[0], pad), 7, np.uint8)], axis=1)
    return rows.shape[1], array.array("B", rows.tobytes())


@pytest.mark.parametrize("encoding", ["bgr8", "BGR8", "8UC3"])
def test_bgr_encodings_stay_views(encoding: str):
    bgr = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    step, data = message_fields(bgr, pad=4)
    frame = camera_frame(encoding, 6, 8, step, data)
    assert isinstance(frame, BgrFrame) and frame_size(frame) == (6, 8)
    assert np.shares_memory(frame.pixels, np.frombuffer(data, np.uint8))
    np.testing.assert_array_equal(frame.pixels, bgr)
    np.testing.assert_array_equal(to_rgb(frame), decode_image(encoding, 6, 8, step, data))


@pytest.mark.parametrize("encoding, channels", [("rgb8", 3), ("rgba8", 4), ("bgra8", 4),
                                                ("mono8", 1), ("yuv422", 2)])
def test_other_encodings_are_decoded_as_the_codec_decodes_them(encoding: str, channels: int):
    pixels = RNG.integers(0, 256, (6, 8, channels), dtype=np.uint8)
    step, data = message_fields(pixels)
    frame = camera_frame(encoding, 6, 8, step, data)
    assert isinstance(frame, np.ndarray) and frame.shape == (6, 8, 3)
    np.testing.assert_array_equal(frame, decode_image(encoding, 6, 8, step, data))
    assert to_rgb(frame) is frame
    if encoding == "rgb8":  # the codec's zero-copy view
        assert np.shares_memory(frame, np.frombuffer(data, np.uint8))


@pytest.mark.parametrize("fields, reason", [
    (("bgr8", 6, 8, 24, b"\0" * 100), "bad_data_length"),
    (("bgr8", 6, 8, 20, b"\0" * 120), "bad_step"),
    (("bgr8", 0, 8, 24, b""), "empty"),
    (("hsv8", 6, 8, 24, b"\0" * 144), "unknown_encoding"),
])
def test_malformed_frames_raise_the_codec_reason(fields, reason: str):
    with pytest.raises(ImageDecodeError) as raised:
        camera_frame(*fields)
    assert raised.value.reason == reason


def test_bgr_frame_rgb_is_a_new_array():
    bgr = RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    rgb = BgrFrame(bgr).rgb()
    np.testing.assert_array_equal(rgb, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    assert not np.shares_memory(rgb, bgr)
