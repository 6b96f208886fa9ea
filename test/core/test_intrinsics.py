"""intrinsics: K and P of a resized image project points where the resize puts them."""

from __future__ import annotations

import numpy as np
import pytest

from ood_perception.core.intrinsics import scale_intrinsics
from ood_perception.errors import ConfigurationError

K = [1000.0, 0.0, 955.3, 0.0, 1002.0, 541.7, 0.0, 0.0, 1.0]
P = [990.0, 0.0, 950.0, -120.5, 0.0, 995.0, 540.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def project(matrix: np.ndarray, point: np.ndarray) -> np.ndarray:
    u, v, w = matrix @ point
    return np.array([u / w, v / w])


def test_points_land_where_the_resize_puts_their_pixels():
    frame_size, size = (1080, 1920), (518, 924)
    k, p = scale_intrinsics(K, P, frame_size, size)
    scale = np.array([size[1] / frame_size[1], size[0] / frame_size[0]])
    for point in ([0.3, -0.2, 5.0], [-2.0, 1.0, 12.0], [0.0, 0.0, 1.0]):
        point = np.array(point)
        pixel = project(np.reshape(K, (3, 3)), point)
        np.testing.assert_allclose(project(np.reshape(k, (3, 3)), point),
                                   (pixel + 0.5) * scale - 0.5, atol=1e-9)
        pixel = project(np.reshape(P, (3, 4)), np.append(point, 1.0))
        np.testing.assert_allclose(project(np.reshape(p, (3, 4)), np.append(point, 1.0)),
                                   (pixel + 0.5) * scale - 0.5, atol=1e-9)
    assert k[0] == pytest.approx(1000.0 * scale[0]) and k[8] == 1.0
    assert p[3] == pytest.approx(-120.5 * scale[0])  # the stereo baseline term scales too


def test_same_size_is_unchanged_and_uncalibrated_stays_zero():
    k, p = scale_intrinsics(K, P, (1080, 1920), (1080, 1920))
    assert k == pytest.approx(K) and p == pytest.approx(P)
    k, p = scale_intrinsics([0.0] * 9, [0.0] * 12, (1080, 1920), (518, 924))
    assert k == [0.0] * 9 and p == [0.0] * 12


@pytest.mark.parametrize("k, p, sizes", [(K[:8], P, ((10, 10), (5, 5))),
                                         (K, P, ((0, 10), (5, 5)))])
def test_bad_inputs_are_refused(k, p, sizes):
    with pytest.raises(ConfigurationError):
        scale_intrinsics(k, p, *sizes)


@pytest.mark.parametrize("mode", ["letterbox", "crop"])
def test_placed_window_shifts_and_scales_the_principal_point(mode):
    from ood_perception.core.placement import placement

    frame_size = (1080, 1440)  # 4:3 into the 518x924 input
    place = placement(mode, frame_size, (518, 924))
    box = place.frame_box
    k, p = scale_intrinsics(K, P, frame_size, place.model_box.size, box)
    scale = np.array([place.model_box.width / box.width, place.model_box.height / box.height])
    corner = np.array([box.left, box.top])
    for point in ([0.3, -0.2, 5.0], [-0.1, 0.05, 2.0]):
        point = np.array(point)
        pixel = project(np.reshape(K, (3, 3)), point)
        np.testing.assert_allclose(project(np.reshape(k, (3, 3)), point),
                                   (pixel - corner + 0.5) * scale - 0.5, atol=1e-9)
    if mode == "crop":
        assert box.left == 0 and box.top > 0  # the rows above the crop shift cy
        assert k[5] == pytest.approx((K[5] - box.top + 0.5) * scale[1] - 0.5)
