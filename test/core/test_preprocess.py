"""preprocess: batch layout, the fast antialiased shrink against OpenCV's INTER_AREA, BGR
frames resized before conversion, the inverse maps and their windows."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest

from ood_perception.core.frames import BgrFrame
from ood_perception.core.placement import UNSEEN_CLASS, placement
from ood_perception.core.preprocess import (
    bilinear_taps,
    classes_to_frame,
    classes_window,
    make_batch,
    nearest_sources,
    outside_crop_score,
    resize_classes,
    resize_frame,
    resize_score,
    score_to_frame,
    score_window,
)
from ood_perception.errors import ConfigurationError

RNG = np.random.default_rng(1)


def smooth_frame(shape: tuple[int, int], seed: int, cells: tuple[int, int] = (6, 8)):
    """Camera-like content without pixel noise (cubic blow-up of a coarse random image)."""
    coarse = np.random.default_rng(seed).integers(0, 256, (*cells, 3), dtype=np.uint8)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


@functools.lru_cache(maxsize=8)
def street_frame(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Smooth shading, sharp-edged boxes of 5-300 px and sensor noise (sigma 4)."""
    rng = np.random.default_rng(seed)
    frame = smooth_frame(shape, seed, (12, 20)).astype(np.int16)
    for _ in range(30):
        top, left = rng.integers(0, shape[0] - 50), rng.integers(0, shape[1] - 50)
        frame[top:top + rng.integers(5, 200), left:left + rng.integers(5, 300)] = (
            rng.integers(0, 256, 3))
    frame += rng.normal(0, 4, frame.shape).astype(np.int16)
    return np.clip(frame, 0, 255).astype(np.uint8)


def test_make_batch_mixed_sizes_is_contiguous_uint8():
    frames = [RNG.integers(0, 256, shape, dtype=np.uint8)
              for shape in [(64, 96, 3), (480, 640, 3), (20, 30, 3)]]
    batch = make_batch(frames, (64, 96))
    assert batch.shape == (3, 64, 96, 3) and batch.dtype == np.uint8
    assert batch.flags.c_contiguous
    np.testing.assert_array_equal(batch[0], frames[0])
    # 480x640 -> 64x96: a 6x5 box average (whole factors dividing the size), then bilinear.
    boxed = cv2.resize(frames[1], (128, 80), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(
        batch[1], cv2.resize(boxed, (96, 64), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_array_equal(
        batch[2], cv2.resize(frames[2], (96, 64), interpolation=cv2.INTER_LINEAR))


@pytest.mark.parametrize("source", [(1080, 1920), (720, 1280), (1200, 1920)])
@pytest.mark.parametrize("size", [(518, 924), (252, 448), (64, 96)])
def test_shrink_is_close_to_opencv_area(source, size):
    """The stated tolerance against INTER_AREA (the former host resize): under a quarter of
    a grey level on average and at most 2 on smooth content; under 2 on average with sharp
    edges and noise (single edge pixels differ more: the two kernels differ in width)."""
    for frame, mean_limit, max_limit in [(smooth_frame(source, 0), 0.25, 2),
                                         (street_frame(source, 1), 2.0, 255)]:
        ours = resize_frame(frame, size).astype(int)
        area = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        difference = np.abs(ours - area)
        assert ours.shape == (*size, 3)
        assert difference.mean() < mean_limit and difference.max() <= max_limit


def test_whole_factor_shrink_is_opencv_area_and_no_split_falls_back_to_it():
    frame = street_frame((1080, 1920), 2)
    np.testing.assert_array_equal(
        resize_frame(frame, (540, 960)),
        cv2.resize(frame, (960, 540), interpolation=cv2.INTER_AREA))
    prime = street_frame((1031, 1913), 3)  # no whole factor divides: plain INTER_AREA
    np.testing.assert_array_equal(
        resize_frame(prime, (252, 448)),
        cv2.resize(prime, (448, 252), interpolation=cv2.INTER_AREA))


def test_bgr_frames_resize_first_and_equal_converting_first():
    bgr = street_frame((1080, 1920), 4)
    padded = np.zeros((1080, 1920 * 3 + 64), np.uint8)  # rows with a stride, as messages have
    padded[:, :1920 * 3] = bgr.reshape(1080, -1)
    view = padded[:, :1920 * 3].reshape(1080, 1920, 3)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    batch = make_batch([BgrFrame(view), rgb, BgrFrame(bgr[:64, :96])], (518, 924))
    np.testing.assert_array_equal(batch[0], batch[1])
    np.testing.assert_array_equal(batch[0], resize_frame(rgb, (518, 924)))
    np.testing.assert_array_equal(batch[2], resize_frame(rgb[:64, :96], (518, 924)))


def test_resize_frame_skips_matching_size():
    frame = RNG.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    assert resize_frame(frame, (8, 12)) is frame


def test_make_batch_accepts_strided_view():
    padded = RNG.integers(0, 256, (10, 20, 4), dtype=np.uint8)
    view = padded[:, :16, :3]
    np.testing.assert_array_equal(make_batch([view], (10, 16))[0], view)


@pytest.mark.parametrize(
    "frames", [[], [np.zeros((4, 4), np.uint8)], [np.zeros((4, 4, 3), np.float32)]])
def test_make_batch_rejects_bad_frames(frames):
    with pytest.raises(ConfigurationError):
        make_batch(frames, (4, 4))


def test_resize_score_bilinear_keeps_range_and_shape():
    score = np.linspace(0.0, 1.0, 6 * 8, dtype=np.float32).reshape(6, 8)
    out = resize_score(score, (30, 40))
    assert out.shape == (30, 40) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert len(np.unique(out)) > len(np.unique(score))  # interpolated, not repeated
    assert resize_score(score, (6, 8)) is score


def test_resize_classes_nearest_invents_no_class():
    classes = np.zeros((6, 8), np.uint8)
    classes[:, 4:] = 10
    out = resize_classes(classes, (25, 33))
    assert out.dtype == np.uint8 and out.shape == (25, 33)
    assert set(np.unique(out)) == {0, 10}
    assert out[0, 0] == 0 and out[-1, -1] == 10


def test_resize_into_a_given_array():
    score = RNG.random((6, 8), dtype=np.float32)
    out = np.empty((30, 40), np.float32)
    assert resize_score(score, (30, 40), out=out) is out
    np.testing.assert_array_equal(out, resize_score(score, (30, 40)))
    classes = RNG.integers(0, 19, (6, 8), dtype=np.uint8)
    same = np.empty((6, 8), np.uint8)
    assert resize_classes(classes, (6, 8), out=same) is same
    np.testing.assert_array_equal(same, classes)


@pytest.mark.parametrize("source, size", [((518, 924), (1080, 1920)), ((37, 74), (1080, 1920)),
                                          ((64, 96), (100, 100)), ((64, 96), (64, 96)),
                                          ((90, 160), (45, 80))])
def test_score_window_is_the_window_of_opencv_bilinear(source, size):
    score = RNG.normal(size=source).astype(np.float32)
    full = resize_score(score, size)
    for rows, cols in [(slice(0, size[0]), slice(0, size[1])),
                       (slice(size[0] // 3, size[0] // 2 + 1), slice(7, size[1] - 5)),
                       (slice(size[0] - 1, size[0]), slice(0, 1))]:
        window = score_window(score, size, rows, cols)
        assert window.dtype == np.float64 and window.shape == full[rows, cols].shape
        np.testing.assert_allclose(window, full[rows, cols], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(classes_window(score.view(np.uint32), size, rows, cols),
                                      resize_classes_any(score.view(np.uint32), size)[rows, cols])


def resize_classes_any(classes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """INTER_NEAREST of any integer map through OpenCV, one byte plane at a time."""
    planes = classes.view(np.uint8).reshape(*classes.shape, -1)
    out = [resize_classes(np.ascontiguousarray(planes[..., i]), size)
           for i in range(planes.shape[-1])]
    return np.stack(out, axis=-1).reshape(*size, -1).view(classes.dtype)[..., 0]


def test_taps_are_read_only_and_clamped():
    first, second, first_weight, second_weight = bilinear_taps(4, 10)
    assert first.min() == 0 and second.max() == 3 and not first.flags.writeable
    np.testing.assert_allclose(first_weight + second_weight, 1.0)
    assert nearest_sources(5, 3).tolist() == [0, 1, 3]


def test_letterbox_batch_pads_with_zeros_and_crop_batch_scales_the_centre():
    frame = np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    [letterbox] = make_batch([frame], (64, 96), "letterbox")
    assert not letterbox[:, :5].any() and not letterbox[:, 90:].any()
    np.testing.assert_array_equal(letterbox[:, 5:90], resize_frame(frame, (64, 85)))
    [crop] = make_batch([frame], (64, 96), "crop")
    np.testing.assert_array_equal(crop, resize_frame(frame[26:453], (64, 96)))
    [bgr] = make_batch([BgrFrame(frame[..., ::-1].copy())], (64, 96), "letterbox")
    np.testing.assert_array_equal(bgr, letterbox)


def test_maps_back_undo_letterbox_and_crop():
    score = np.random.default_rng(4).random((64, 96)).astype(np.float32)
    classes = np.random.default_rng(5).integers(0, 19, (64, 96), dtype=np.uint8)
    letterbox = placement("letterbox", (480, 640), (64, 96))
    padded = score.copy()
    padded[:, :5] = padded[:, 90:] = 1e6  # the model's answer on padding never comes back
    back = score_to_frame(padded, letterbox, fill=-1.0)
    np.testing.assert_array_equal(back, resize_score(score[:, 5:90], (480, 640)))
    np.testing.assert_array_equal(classes_to_frame(classes, letterbox),
                                  resize_classes(classes[:, 5:90].copy(), (480, 640)))
    crop = placement("crop", (480, 640), (64, 96))
    back = score_to_frame(score, crop, fill=-1.0)
    assert (back[:26] == -1.0).all() and (back[453:] == -1.0).all()
    np.testing.assert_array_equal(back[26:453], resize_score(score, (427, 640)))
    unseen = classes_to_frame(classes, crop)
    assert (unseen[:26] == UNSEEN_CLASS).all() and (unseen[453:] == UNSEEN_CLASS).all()
    np.testing.assert_array_equal(unseen[26:453], resize_classes(classes, (427, 640)))
    assert outside_crop_score((-2.0, 4.0)) == -2.0 and np.isnan(outside_crop_score(None))
