"""`sensor_msgs/Image` fields and JPEG/PNG bytes <-> RGB uint8, without ROS or cv_bridge.

Encoding names follow ROS `sensor_msgs/image_encodings.hpp`: `yuv422` is UYVY byte order
(U0 Y0 V0 Y1), as are `uyvy`; `yuyv` and `yuv422_yuy2` are YUYV (Y0 U0 Y1 V0). `nv21` is
the V4L2 layout: `height` rows of Y (`step` bytes each), then `height / 2` rows of
interleaved V/U at half resolution, so the data holds `step * height * 3 / 2` bytes.
Bayer mosaics are demosaiced by OpenCV with cv_bridge's pattern mapping. 16-bit encodings
(mono16, 16UC1, bayer_*16) keep their high byte (value >> 8, honouring `is_bigendian`):
the full 0..65535 range maps linearly onto 0..255, as cv_bridge's 16 -> 8 bit conversion
scales; a camera that fills only the low 12 bits should be set to left-align its data.
Every malformed frame raises `ImageDecodeError` whose `reason` is a stable key for drop
counters: empty, bad_size, bad_step, bad_data_length, unknown_encoding, odd_width,
odd_height, corrupt_compressed, bad_array.
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
# Bayer mosaics by their ROS name; OpenCV names a pattern by the second row's first two
# pixels, so ROS rggb is OpenCV's BayerBG (the mapping cv_bridge uses).
_BAYER: dict[str, int] = {
    "bayer_rggb": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg": cv2.COLOR_BayerGB2RGB,
}
# One-channel 16-bit encodings and the conversion of their 8-bit image to RGB.
_GREY16: dict[str, int] = {"mono16": cv2.COLOR_GRAY2RGB, "16uc1": cv2.COLOR_GRAY2RGB,
                           **{f"{name}16": code for name, code in _BAYER.items()}}
_BAYER8: dict[str, int] = {f"{name}8": code for name, code in _BAYER.items()}
# 4:2:0 semi-planar encodings sensor_msgs names.
_YUV420SP: dict[str, int] = {"nv21": cv2.COLOR_YUV2RGB_NV21}
SUPPORTED_ENCODINGS = tuple(sorted({*_PACKED, *_YUV422, *_BAYER8, *_GREY16, *_YUV420SP}))

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
    other encodings return a new contiguous array. `is_bigendian` matters only for the
    16-bit encodings.
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
    if key in _BAYER8:
        pixels = _pixel_rows(height, width, step, data, 1)[:, :, 0]
        return cv2.cvtColor(np.ascontiguousarray(pixels), _BAYER8[key])
    if key in _GREY16:
        rows = _pixel_rows(height, width, step, data, 2)
        high_byte = rows[:, :, 0] if is_bigendian else rows[:, :, 1]
        return cv2.cvtColor(np.ascontiguousarray(high_byte), _GREY16[key])
    if key in _YUV420SP:
        return _decode_yuv420sp(encoding, height, width, step, data, _YUV420SP[key])
    raise ImageDecodeError(
        "unknown_encoding",
        f"unsupported encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")


def _decode_yuv420sp(encoding: str, height: int, width: int, step: int,
                     data: bytes | memoryview | np.ndarray, conversion: int) -> np.ndarray:
    """A Y plane of `height` rows then a half-height interleaved chroma plane -> RGB."""
    if width % 2 or height % 2:
        reason = "odd_width" if width % 2 else "odd_height"
        raise ImageDecodeError(reason, f"{encoding} needs an even width and height, got "
                               f"{width}x{height}")
    planes = _pixel_rows(height + height // 2, width, step, data, 1)[:, :, 0]
    return cv2.cvtColor(np.ascontiguousarray(planes), conversion)


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
