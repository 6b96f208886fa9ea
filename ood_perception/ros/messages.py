"""ROS messages <-> core arrays, with the core codec (no cv_bridge).

Images are converted with `codec` (no cv_bridge); output images copy the input header, so
stamp and frame_id line up with the camera for the planner, RViz and bag tools.
"""

from __future__ import annotations

import array
import copy
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from ood_perception.core.codec import (
    decode_compressed,
    decode_output,
    output_step,
)
from ood_perception.core.frames import Frame, camera_frame
from ood_perception.core.intrinsics import scale_intrinsics
from ood_perception.core.message_buffers import message_bytes
from ood_perception.core.placement import placement
from ood_perception.errors import ImageDecodeError
from ood_perception.ros.frame_slots import PendingFrame

BIG_ENDIAN = int(sys.byteorder == "big")
# Diagnostics levels (bytes, as diagnostic_msgs stores them).
OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


def message_to_frame(message: Image | CompressedImage) -> Frame:
    """Image or CompressedImage -> a frame for `Pipeline.process`: rgb8 and bgr8 stay views of
    the message's bytes (`core.frames`), the rest is decoded to RGB; malformed input raises
    ImageDecodeError."""
    if isinstance(message, CompressedImage):
        return decode_compressed(message.format, message.data)
    return camera_frame(message.encoding, message.height, message.width, message.step,
                        message.data, message.is_bigendian)


@dataclass
class DecodedBatch:
    """The frames of a batch ready for the pipeline, and those dropped with (reason, detail)."""

    kept: list[PendingFrame] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    decode_ms: list[float] = field(default_factory=list)
    dropped: list[tuple[PendingFrame, str, str]] = field(default_factory=list)


def decode_batch(pending: list[PendingFrame], max_frame_age: float, now_s: float) -> DecodedBatch:
    """Decode each frame of a batch; one that is older than `max_frame_age` (> 0) seconds at
    `now_s` (the node clock) or malformed is dropped, never the batch."""
    batch = DecodedBatch()
    for item in pending:
        age = now_s - stamp_seconds(item.message.header)
        if max_frame_age > 0 and age > max_frame_age:
            batch.dropped.append((item, "too_old", f"{age:.3f} s old, max_frame_age "
                                                   f"{max_frame_age:g} s"))
            continue
        start = time.perf_counter()
        try:
            batch.frames.append(message_to_frame(item.message))
        except ImageDecodeError as error:
            batch.dropped.append((item, error.reason, str(error)))
            continue
        except Exception as error:  # a decoder bug must not sink the other cameras
            batch.dropped.append((item, "decode_error", f"{type(error).__name__}: {error}"))
            continue
        batch.decode_ms.append((time.perf_counter() - start) * 1000.0)
        batch.kept.append(item)
    return batch


def image_array(message: Image) -> np.ndarray:
    """An output image (32FC1, mono8, bgr8, rgb8) -> HxW or HxWx3 array in host byte order."""
    return decode_output(message.encoding, message.height, message.width, message.step,
                         message.data, message.is_bigendian)


def image_message(header: Header, pixels: np.ndarray, encoding: str) -> Image:
    """A `sensor_msgs/Image` of `pixels` (already in `encoding`'s layout) with `header`.

    Maps the pipeline wrote into message memory (`core.message_buffers`) become the data as
    they are; others are copied once into the array.array the message type stores.
    """
    step = output_step(pixels, encoding)
    data = message_bytes(pixels)
    if data is None:
        data = array.array("B")
        data.frombytes(memoryview(np.ascontiguousarray(pixels)).cast("B"))
    message = Image(header=header, height=pixels.shape[0], width=pixels.shape[1],
                    encoding=encoding, is_bigendian=BIG_ENDIAN, step=step, check_fields=True)
    message.data = data
    return message


def stamp_seconds(header: Header) -> float:
    """Header stamp as float seconds (same epoch as the node clock)."""
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def _value(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def diagnostic_status(name: str, hardware_id: str, level: int, summary: str,
                      values: dict) -> DiagnosticStatus:
    """A DiagnosticStatus (`level` 0/1/2 = OK/WARN/ERROR) with `values` flattened to
    key/value strings (dicts as `key/inner`)."""
    pairs = []
    for key, value in values.items():
        if isinstance(value, dict):
            pairs += [KeyValue(key=f"{key}/{inner}", value=_value(v))
                      for inner, v in sorted(value.items())]
        else:
            pairs.append(KeyValue(key=key, value=_value(value)))
    return DiagnosticStatus(level=bytes([level]), name=name, message=summary,
                            hardware_id=hardware_id, values=pairs)


def diagnostics_array(stamp, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
    """The `/diagnostics` message of one report."""
    return DiagnosticArray(header=Header(stamp=stamp), status=statuses)


def camera_info_for(header: Header, info: CameraInfo, size: tuple[int, int] | None = None,
                    resize_mode: str = "stretch") -> CameraInfo:
    """The camera's calibration with an answered frame's header, so it pairs with the
    outputs of that frame (image_geometry and RViz match them by stamp); with `size`
    (height, width) of the model input, that of the model-resolution score: the frame's
    window (`resize_mode`'s placement) resized to the scored window."""
    answered = copy.copy(info)
    answered.header = header
    frame = (info.height, info.width)
    if size is not None and frame != tuple(size) and info.height > 0 and info.width > 0:
        place = placement(resize_mode, frame, tuple(size))
        answered.k, answered.p = scale_intrinsics(info.k, info.p, frame, place.model_box.size,
                                                  place.frame_box)
        answered.height, answered.width = place.model_box.size
    return answered
