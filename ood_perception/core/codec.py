"""`sensor_msgs/Image` fields and JPEG/PNG bytes <-> RGB uint8, without ROS or cv_bridge.

Encoding names follow ROS `sensor_msgs/image_encodings.hpp`: `yuv422` is UYVY byte order
(U0 Y0 V0 Y1), as are `uyvy`; `yuyv` and `yuv422_yuy2` are YUYV (Y0 U0 Y1 V0).
Every malformed frame raises `ImageDecodeError` whose `reason` is a stable key for drop
counters: empty, bad_size, bad_step, bad_data_length, unknown_encoding, odd_width,
corrupt_compressed, bad_array.
"""

from __future__ import annotations

import cv2
import numpy as np

from ood_perception.errors import ImageDecodeError

# encoding -> (bytes per pixel, cv2 conversion to RGB or None for a zero-copy view).
_PACKED: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
    "8uc1": (1, cv2.COLOR_GRAY2RGB),
    "8uc3": (3, cv2.COLOR_BGR2RGB),
}
# 4:2:2 encodings: two pixels share one chroma pair in 4 bytes.
_YUV422: dict[str, int] = {
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuyv": cv2.COLOR_YUV2RGB_YUYV,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV,
}
SUPPORTED_ENCODINGS = tuple(sorted({*_PACKED, *_YUV422}))

# output encoding -> (dtype, channels)
_OUTPUTS: dict[str, tuple[np.dtype, int]] = {
    "32FC1": (np.dtype(np.float32), 1),
    "mono8": (np.dtype(np.uint8), 1),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgb8": (np.dtype(np.uint8), 3),
}


def _pixel_rows(
    height: int, width: int, step: int, data: bytes | memoryview | np.ndarray, bpp: int
) -> np.ndarray:
    """Validated HxWxbpp uint8 view of `data` (rows `step` bytes apart); no copy."""
    if height < 0 or width < 0:
        raise ImageDecodeError("bad_size", f"negative image size {width}x{height}")
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else (
        data.reshape(-1).view(np.uint8))
    if height == 0 or width == 0 or buffer.size == 0:
        raise ImageDecodeError(
            "empty", f"empty image: {width}x{height}, {buffer.size} bytes of data")
    if step < width * bpp:
        raise ImageDecodeError(
            "bad_step", f"step {step} < width {width} x {bpp} bytes per pixel")
    if buffer.size != step * height:
        raise ImageDecodeError(
            "bad_data_length",
            f"data has {buffer.size} bytes, expected step {step} x height {height}"
            f" = {step * height}")
    rows = buffer.reshape(height, step)[:, : width * bpp]
    return rows.reshape(height, width, bpp)


def decode_image(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: bytes | memoryview | np.ndarray,
    is_bigendian: int = 0,
) -> np.ndarray:
    """`sensor_msgs/Image` fields -> HxWx3 RGB uint8.

    rgb8 returns a view of `data` (read-only for bytes input, rows may be strided);
    other encodings return a new contiguous array. `is_bigendian` is irrelevant for the
    8-bit encodings accepted here and is ignored.
    """
    key = encoding.lower()
    if key in _PACKED:
        bpp, conversion = _PACKED[key]
        pixels = _pixel_rows(height, width, step, data, bpp)
        if conversion is None:
            return pixels
        if bpp == 1:
            pixels = pixels[:, :, 0]
        return cv2.cvtColor(pixels, conversion)
    if key in _YUV422:
        if width % 2:
            raise ImageDecodeError("odd_width", f"{encoding} needs an even width, got {width}")
        pixels = _pixel_rows(height, width, step, data, 2)
        return cv2.cvtColor(np.ascontiguousarray(pixels), _YUV422[key])
    raise ImageDecodeError(
        "unknown_encoding",
        f"unsupported encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")


def decode_compressed(format: str, data: bytes | memoryview | np.ndarray) -> np.ndarray:
    """`sensor_msgs/CompressedImage` (JPEG or PNG bytes) -> HxWx3 RGB uint8."""
    if "compresseddepth" in format.lower():
        raise ImageDecodeError("unknown_encoding", f"unsupported compressed format {format!r}")
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else (
        data.reshape(-1).view(np.uint8))
    if buffer.size == 0:
        raise ImageDecodeError("empty", "compressed image has no data")
    try:
        bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as error:  # e.g. a header claiming more pixels than OpenCV allows
        raise ImageDecodeError("corrupt_compressed", f"cannot decode {buffer.size} bytes of "
                               f"{format!r} data: {str(error).strip().splitlines()[-1]}") from None
    if bgr is None:
        raise ImageDecodeError(
            "corrupt_compressed", f"cannot decode {buffer.size} bytes of {format!r} data")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_image(array: np.ndarray, encoding: str) -> tuple[int, bytes]:
    """Array already in `encoding`'s layout (HxW, or HxWx3 in its channel order) -> (step, data).

    32FC1 bytes are in the host byte order (set `is_bigendian` from `sys.byteorder`).
    """
    return output_step(array, encoding), array.tobytes()


def output_step(array: np.ndarray, encoding: str) -> int:
    """Row length in bytes of `array` as an `encoding` image; raises if it does not fit."""
    if encoding not in _OUTPUTS:
        raise ImageDecodeError(
            "unknown_encoding",
            f"cannot encode {encoding!r}; supported: {', '.join(sorted(_OUTPUTS))}")
    dtype, channels = _OUTPUTS[encoding]
    shape_ok = array.ndim == 2 if channels == 1 else (array.ndim == 3 and array.shape[2] == 3)
    if not shape_ok or array.dtype != dtype:
        raise ImageDecodeError(
            "bad_array",
            f"{encoding} needs {dtype} {'HxW' if channels == 1 else 'HxWx3'}, got "
            f"{array.dtype} {array.shape}")
    return array.shape[1] * channels * dtype.itemsize


def decode_output(encoding: str, height: int, width: int, step: int,
                  data: bytes | memoryview | np.ndarray, is_bigendian: int = 0) -> np.ndarray:
    """The inverse of `encode_image`: an output image's fields -> HxW or HxWx3 array (copy)."""
    if encoding not in _OUTPUTS:
        raise ImageDecodeError(
            "unknown_encoding",
            f"cannot decode {encoding!r}; supported: {', '.join(sorted(_OUTPUTS))}")
    dtype, channels = _OUTPUTS[encoding]
    dtype = dtype.newbyteorder(">" if is_bigendian else "<")
    rows = _pixel_rows(height, width, step, data, channels * dtype.itemsize)
    values = np.ascontiguousarray(rows).view(dtype).astype(dtype.newbyteorder("="))
    return values[:, :, 0] if channels == 1 else values
