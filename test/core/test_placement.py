"""Where frames sit in the model input: stretch, letterbox and crop windows."""

from __future__ import annotations

import pytest

from ood_perception.core.placement import Box, placement
from ood_perception.errors import ConfigurationError


def test_letterbox_pads_the_short_side_evenly_and_keeps_the_whole_frame():
    place = placement("letterbox", (480, 640), (64, 96))  # 4:3 into 3:2
    assert place.frame_box == Box(0, 0, 480, 640)
    assert place.model_box == Box(0, 5, 64, 85)  # 640 * 64 / 480 = 85.3 columns
    assert place.whole_frame and not place.whole_model
    tall = placement("letterbox", (200, 100), (64, 96))
    assert tall.model_box == Box(0, 32, 64, 32)


def test_crop_keeps_the_centre_at_the_model_aspect():
    place = placement("crop", (480, 640), (64, 96))
    assert place.frame_box == Box(26, 0, 427, 640)  # 64 / (96 / 640) = 426.7 rows
    assert place.model_box == Box(0, 0, 64, 96)
    assert place.whole_model and not place.whole_frame
    assert placement("crop", (1080, 1920), (518, 924)).frame_box == Box(2, 0, 1076, 1920)


@pytest.mark.parametrize("mode", ["stretch", "letterbox", "crop"])
def test_same_aspect_or_stretch_uses_both_whole_images(mode):
    place = placement(mode, (128, 192), (64, 96))
    assert place.whole_frame and place.whole_model
    stretched = placement("stretch", (480, 640), (64, 96))
    assert stretched.whole_frame and stretched.whole_model


def test_bad_mode_or_size_is_refused():
    with pytest.raises(ConfigurationError, match="resize mode must be one of"):
        placement("fit", (480, 640), (64, 96))
    with pytest.raises(ConfigurationError, match="positive"):
        placement("crop", (0, 640), (64, 96))
