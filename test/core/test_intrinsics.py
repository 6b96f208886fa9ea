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
