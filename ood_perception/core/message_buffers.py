"""Output maps written straight into memory a ROS image message can keep without a copy.

The rosidl Python type of `sensor_msgs/Image` (made with `check_fields=True`) stores an
`array.array('B')` given to `data` as it is, so a map computed into one (`message_array`)
becomes a message with no copy (`message_bytes`).
"""

from __future__ import annotations

import array

import numpy as np


def message_array(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """Zeroed C-contiguous array of `shape`/`dtype` whose memory is an `array.array('B')`."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape)) * dtype.itemsize
    if count == 0:
        return np.zeros(shape, dtype)
    storage = array.array("B", b"\0") * count  # a fill, not a Python-level loop
    return np.frombuffer(storage, dtype).reshape(shape)


def message_bytes(pixels: np.ndarray) -> array.array | None:
    """The `array.array('B')` holding exactly `pixels`' bytes in order, ready to be an image
    message's `data`; None when `pixels` lives elsewhere (then copy it)."""
    owner = pixels
    while isinstance(owner, (np.ndarray, memoryview)):
        owner = owner.base if isinstance(owner, np.ndarray) else owner.obj
    if not (isinstance(owner, array.array) and owner.typecode == "B"
            and pixels.flags.c_contiguous and pixels.nbytes == len(owner)
            and pixels.ctypes.data == owner.buffer_info()[0]):
        return None
    return owner
