"""codec: every ROS encoding against cv2 references, and every malformed case's reason."""

from __future__ import annotations

import array
import struct
import time

import cv2
import numpy as np
import pytest

from ood_perception.core.codec import decode_compressed, decode_image, encode_image
from ood_perception.errors import ImageDecodeError

RNG = np.random.default_rng(0)


def random_rgb(height: int = 6, width: int = 8) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def padded(pixels: np.ndarray, pad: int) -> tuple[int, bytes]:
    """Rows of `pixels` (HxWxC uint8) with `pad` junk bytes each -> (step, data)."""
    rows = pixels.reshape(pixels.shape[0], -1)
    junk = np.full((rows.shape[0], pad), 7, dtype=np.uint8)
    return rows.shape[1] + pad, np.concatenate([rows, junk], axis=1).tobytes()


@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_packed_colour_round_trip(encoding: str, pad: int):
    rgb = random_rgb()
    to_encoding = {"rgb8": None, "bgr8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGB2RGBA,
                   "bgra8": cv2.COLOR_RGB2BGRA}[encoding]
    pixels = rgb if to_encoding is None else cv2.cvtColor(rgb, to_encoding)
    if pixels.shape[2] == 4:
        pixels[:, :, 3] = 99  # alpha must be dropped, not blended
    step, data = padded(pixels, pad)
    decoded = decode_image(encoding, 6, 8, step, data)
    assert decoded.shape == (6, 8, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, rgb)


def test_rgb8_is_zero_copy_view():
    buffer = bytearray(random_rgb().tobytes())
    decoded = decode_image("rgb8", 6, 8, 24, buffer)
    buffer[0] = (buffer[0] + 1) % 256
    assert decoded[0, 0, 0] == buffer[0]


@pytest.mark.parametrize("wrap", [lambda raw: array.array("B", raw), memoryview, bytearray,
                                  lambda raw: np.frombuffer(raw, np.uint8)])
def test_rclpy_style_buffers(wrap):
    """rclpy gives `uint8[]` fields as array.array('B'); any buffer object decodes."""
    rgb = random_rgb()
    np.testing.assert_array_equal(decode_image("rgb8", 6, 8, 24, wrap(rgb.tobytes())), rgb)


def test_mono8_replicates_grey():
    grey = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    step, data = padded(grey[:, :, None], 3)
    decoded = decode_image("mono8", 5, 7, step, data)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[:, :, channel], grey)


@pytest.mark.parametrize(
    ("encoding", "code"),
    [("yuyv", cv2.COLOR_YUV2RGB_YUYV), ("yuv422_yuy2", cv2.COLOR_YUV2RGB_YUYV),
     ("uyvy", cv2.COLOR_YUV2RGB_UYVY), ("yuv422", cv2.COLOR_YUV2RGB_UYVY)],
)
def test_yuv422_matches_cv2(encoding: str, code: int):
    packed = RNG.integers(0, 256, (4, 10, 2), dtype=np.uint8)
    step, data = padded(packed, 4)
    decoded = decode_image(encoding, 4, 10, step, data)
    np.testing.assert_array_equal(decoded, cv2.cvtColor(packed, code))


def test_yuv422_is_uyvy_byte_order():
    """ROS `yuv422` = U Y V Y: grey chroma (U=V=128) with Y 50, 200 gives BT.601 40, 214."""
    uyvy = bytes([128, 50, 128, 200])
    decoded = decode_image("yuv422", 1, 2, 4, uyvy)
    assert abs(int(decoded[0, 0, 0]) - 40) <= 1 and abs(int(decoded[0, 1, 0]) - 214) <= 1
    yuyv = decode_image("yuyv", 1, 2, 4, bytes([50, 128, 200, 128]))
    np.testing.assert_array_equal(decoded, yuyv)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("rgb8", 0, 8, 24, b""), "empty"),
        (("rgb8", 2, 0, 0, b""), "empty"),
        (("rgb8", -2, 8, 24, bytes(48)), "bad_size"),
        (("rgb8", 2, 8, 23, bytes(46)), "bad_step"),
        (("rgba8", 2, 8, 24, bytes(48)), "bad_step"),
        (("rgb8", 2, 8, 24, bytes(47)), "bad_data_length"),
        (("rgb8", 2, 8, 24, bytes(49)), "bad_data_length"),
        (("rgb16", 2, 8, 48, bytes(96)), "unknown_encoding"),
        (("yuyv", 2, 7, 14, bytes(28)), "odd_width"),
    ],
)
def test_malformed_images_raise_with_reason(args: tuple, reason: str):
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(*args)
    assert caught.value.reason == reason


@pytest.mark.parametrize("extension", [".png", ".jpg"])
def test_decode_compressed_matches_imdecode(extension: str):
    rgb = random_rgb(16, 24)
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    decoded = decode_compressed(extension[1:], encoded.tobytes())
    expected = cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(decoded, expected)
    if extension == ".png":
        np.testing.assert_array_equal(decoded, rgb)


@pytest.mark.parametrize(
    ("data", "reason"), [(b"", "empty"), (b"\xff\xd8junk", "corrupt_compressed")])
def test_decode_compressed_rejects(data: bytes, reason: str):
    with pytest.raises(ImageDecodeError) as caught:
        decode_compressed("jpeg", data)
    assert caught.value.reason == reason


def test_jpeg_header_claiming_a_huge_image_is_a_decode_error():
    """OpenCV raises (rather than returning None) past its pixel limit: still one bad frame."""
    ok, encoded = cv2.imencode(".jpg", random_rgb(16, 24))
    data = bytearray(encoded.tobytes())
    frame_header = data.find(b"\xff\xc0")  # SOF0: marker, length, precision, height, width
    data[frame_header + 5:frame_header + 9] = struct.pack(">HH", 65000, 65000)
    with pytest.raises(ImageDecodeError) as caught:
        decode_compressed("jpeg", bytes(data))
    assert caught.value.reason == "corrupt_compressed"


@pytest.mark.parametrize(
    ("encoding", "array"),
    [("32FC1", RNG.random((5, 7), dtype=np.float32)),
     ("mono8", RNG.integers(0, 256, (5, 7), dtype=np.uint8)),
     ("bgr8", random_rgb(5, 7)), ("rgb8", random_rgb(5, 7))],
)
def test_encode_image_round_trip(encoding: str, array: np.ndarray):
    step, data = encode_image(array, encoding)
    assert step == array.strides[0] and len(data) == step * array.shape[0]
    restored = np.frombuffer(data, dtype=array.dtype).reshape(array.shape)
    np.testing.assert_array_equal(restored, array)
    if encoding == "bgr8":
        np.testing.assert_array_equal(decode_image("bgr8", 5, 7, step, data), array[:, :, ::-1])


def test_encode_image_rejects_wrong_layout():
    with pytest.raises(ImageDecodeError) as caught:
        encode_image(np.zeros((4, 4, 3), np.uint8), "32FC1")
    assert caught.value.reason == "bad_array"
    with pytest.raises(ImageDecodeError) as caught:
        encode_image(np.zeros((4, 4), np.uint8), "16UC1")
    assert caught.value.reason == "unknown_encoding"


def test_full_hd_decode():
    bgr = RNG.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    data = bgr.tobytes()
    start = time.perf_counter()
    rgb = decode_image("bgr8", 1080, 1920, 1920 * 3, data)
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(rgb, bgr[:, :, ::-1])
    assert elapsed < 1.0


@pytest.mark.parametrize(("encoding", "array"), [
    ("32FC1", np.linspace(-3, 7, 12, dtype=np.float32).reshape(3, 4)),
    ("mono8", np.arange(12, dtype=np.uint8).reshape(3, 4)),
    ("bgr8", np.arange(36, dtype=np.uint8).reshape(3, 4, 3))])
def test_outputs_decode_back_to_what_was_encoded(encoding, array):
    from ood_perception.core.codec import decode_output

    step, data = encode_image(array, encoding)
    assert np.array_equal(decode_output(encoding, 3, 4, step, data), array)
    swapped = array.byteswap() if array.dtype.itemsize > 1 else array
    assert np.array_equal(decode_output(encoding, 3, 4, step, swapped.tobytes(), 1), array)


def bayer_mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """The HxW mosaic a sensor with `pattern` (e.g. "rggb": R G / G B) records of `rgb`."""
    channel = {"r": 0, "g": 1, "b": 2}
    mosaic = np.empty(rgb.shape[:2], np.uint8)
    for index, letter in enumerate(pattern):
        row, col = divmod(index, 2)
        mosaic[row::2, col::2] = rgb[row::2, col::2, channel[letter]]
    return mosaic


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns_recover_the_colour(pattern: str):
    rgb = np.empty((8, 10, 3), np.uint8)
    rgb[:] = (200, 90, 20)
    mosaic = bayer_mosaic(rgb, pattern)
    step, data = padded(mosaic[:, :, None], 3)
    decoded = decode_image(f"bayer_{pattern}8", 8, 10, step, data)
    np.testing.assert_array_equal(decoded[2:-2, 2:-2], rgb[2:-2, 2:-2])


@pytest.mark.parametrize("big_endian", [0, 1])
def test_16_bit_keeps_the_high_byte(big_endian: int):
    grey = RNG.integers(0, 256, (4, 6), dtype=np.uint16)
    values = (grey << 8) | RNG.integers(0, 256, (4, 6), dtype=np.uint16)  # low byte: noise
    data = values.astype(">u2" if big_endian else "<u2").tobytes()
    for encoding in ("mono16", "16UC1"):
        decoded = decode_image(encoding, 4, 6, 12, data, big_endian)
        np.testing.assert_array_equal(decoded, np.repeat(grey[:, :, None], 3, 2).astype(np.uint8))


def test_bayer16_is_scaled_then_demosaiced():
    rgb = np.empty((6, 8, 3), np.uint8)
    rgb[:] = (30, 160, 240)
    mosaic = bayer_mosaic(rgb, "grbg").astype("<u2") * 257
    decoded = decode_image("bayer_grbg16", 6, 8, 16, mosaic.tobytes())
    np.testing.assert_array_equal(decoded[2:-2, 2:-2], rgb[2:-2, 2:-2])


def test_nv21_matches_the_planar_cv2_reference():
    rgb = random_rgb(6, 8)
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)  # Y (6 rows), U (3x4), V (3x4) flattened
    y, rest = i420[:6], i420[6:].reshape(-1)
    u, v = rest[:12].reshape(3, 4), rest[12:].reshape(3, 4)
    vu = np.empty((3, 8), np.uint8)
    vu[:, 0::2], vu[:, 1::2] = v, u
    step, data = padded(np.concatenate([y, vu])[:, :, None], 4)
    decoded = decode_image("nv21", 6, 8, step, data)
    np.testing.assert_array_equal(decoded, cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420))
    with pytest.raises(ImageDecodeError) as caught:
        decode_image("nv21", 5, 8, 8, bytes(8 * 7))
    assert caught.value.reason == "odd_height"
    with pytest.raises(ImageDecodeError) as caught:
        decode_image("nv21", 6, 8, 8, bytes(48))  # the Y plane alone
    assert caught.value.reason == "bad_data_length"
