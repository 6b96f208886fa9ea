"""message_buffers: maps written into memory an image message keeps without copying."""

from __future__ import annotations

import numpy as np
import pytest

from ood_perception.core.message_buffers import message_array, message_bytes


@pytest.mark.parametrize("shape, dtype", [((1080, 1920), np.float32), ((6, 8, 3), np.uint8),
                                          ((0, 4), np.uint8)])
def test_message_array_is_zeroed_and_owned_by_an_array_array(shape, dtype):
    pixels = message_array(shape, dtype)
    assert pixels.shape == shape and pixels.dtype == dtype and pixels.flags.c_contiguous
    assert not pixels.any()
    storage = message_bytes(pixels)
    if pixels.size == 0:
        assert storage is None
        return
    pixels.flat[-1] = 3
    assert storage.typecode == "B" and storage.tobytes() == pixels.tobytes()


def test_views_and_plain_arrays_have_no_message_bytes():
    pixels = message_array((4, 6), np.uint8)
    assert message_bytes(pixels[1:]) is None and message_bytes(pixels[:, :3]) is None
    assert message_bytes(pixels.reshape(6, 4)) is not None  # the same bytes in order
    assert message_bytes(np.zeros((4, 6), np.uint8)) is None


@pytest.mark.ros
def test_an_image_message_keeps_the_buffer_without_a_copy():
    """rosidl keeps an array.array as it is only in a message made with check_fields=True;
    otherwise its setter copies (array.array(value))."""
    from sensor_msgs.msg import Image
    pixels = message_array((10, 12), np.float32)
    pixels[2, 3] = 1.5
    message = Image(height=10, width=12, encoding="32FC1", step=48, check_fields=True)
    message.data = message_bytes(pixels)
    assert message.data is message_bytes(pixels)
    assert np.frombuffer(message.data, np.float32).reshape(10, 12)[2, 3] == 1.5
