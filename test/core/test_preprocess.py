"""preprocess: batch layout, interpolation choice, identity shortcut and the inverse maps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ood_perception.core.preprocess import make_batch, resize_classes, resize_frame, resize_score
from ood_perception.errors import ConfigurationError

RNG = np.random.default_rng(1)


def test_make_batch_mixed_sizes_is_contiguous_uint8():
    frames = [RNG.integers(0, 256, shape, dtype=np.uint8)
              for shape in [(64, 96, 3), (480, 640, 3), (20, 30, 3)]]
    batch = make_batch(frames, (64, 96))
    assert batch.shape == (3, 64, 96, 3) and batch.dtype == np.uint8
    assert batch.flags.c_contiguous
    np.testing.assert_array_equal(batch[0], frames[0])
    np.testing.assert_array_equal(
        batch[1], cv2.resize(frames[1], (96, 64), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(
        batch[2], cv2.resize(frames[2], (96, 64), interpolation=cv2.INTER_LINEAR))


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
