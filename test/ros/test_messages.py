"""ROS messages <-> arrays with real sensor_msgs types (no cv_bridge)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs")
pytestmark = pytest.mark.ros

from builtin_interfaces.msg import Time  # noqa: E402
from frame_pixels import to_rgb  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from ood_perception.core.frames import BgrFrame  # noqa: E402
from ood_perception.errors import ImageDecodeError  # noqa: E402
from ood_perception.ros.messages import (  # noqa: E402
    OK,
    camera_info_for,
    diagnostic_status,
    diagnostics_array,
    image_message,
    message_to_frame,
    stamp_seconds,
)

HEADER = Header(stamp=Time(sec=12, nanosec=500_000_000), frame_id="front")


def test_score_message_keeps_header_size_and_float_values():
    score = np.linspace(-1, 1, 6 * 4, dtype=np.float32).reshape(6, 4)
    message = image_message(HEADER, score, "32FC1")
    assert (message.header, message.height, message.width, message.step) == (HEADER, 6, 4, 16)
    back = np.frombuffer(bytes(message.data), np.float32).reshape(6, 4)
    np.testing.assert_array_equal(back, score)


def test_bgr_message_decodes_back_to_the_rgb_frame():
    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), np.uint8)
    message = image_message(HEADER, np.ascontiguousarray(rgb[..., ::-1]), "bgr8")
    frame = message_to_frame(message)
    assert isinstance(frame, BgrFrame)  # a view of the message, converted only when needed
    assert np.shares_memory(frame.pixels, np.frombuffer(message.data, np.uint8))
    np.testing.assert_array_equal(to_rgb(frame), rgb)


def test_strided_rows_and_bad_fields():
    rgb = np.random.default_rng(1).integers(0, 255, (3, 4, 3), np.uint8)
    padded = np.zeros((3, 16), np.uint8)
    padded[:, :12] = rgb.reshape(3, 12)
    message = Image(header=HEADER, height=3, width=4, encoding="rgb8", step=16,
                    data=padded.tobytes())
    np.testing.assert_array_equal(to_rgb(message_to_frame(message)), rgb)
    message.step = 11
    with pytest.raises(ImageDecodeError) as error:
        to_rgb(message_to_frame(message))
    assert error.value.reason == "bad_step"


def test_compressed_png_and_corrupt_jpeg():
    rgb = np.random.default_rng(2).integers(0, 255, (8, 6, 3), np.uint8)
    ok, png = cv2.imencode(".png", rgb[..., ::-1])
    message = CompressedImage(header=HEADER, format="png", data=png.tobytes())
    np.testing.assert_array_equal(to_rgb(message_to_frame(message)), rgb)
    message = CompressedImage(header=HEADER, format="jpeg", data=b"\xff\xd8\xff garbage")
    with pytest.raises(ImageDecodeError) as error:
        to_rgb(message_to_frame(message))
    assert error.value.reason == "corrupt_compressed"


def test_stamp_and_diagnostics_flattening():
    assert stamp_seconds(HEADER) == 12.5
    status = diagnostic_status("node: x", "cpu", 0, "fine",
                               {"rate_hz": 9.87654, "drops": {"bad_step": 2}, "backend": "ort"})
    array = diagnostics_array(HEADER.stamp, [status])
    values = {v.key: v.value for v in array.status[0].values}
    assert values == {"rate_hz": "9.877", "drops/bad_step": "2", "backend": "ort"}
    assert array.status[0].level == OK and array.status[0].message == "fine"
    assert diagnostic_status("n", "", 2, "bad", {}).level == b"\x02"


def test_camera_info_takes_the_answered_frame_header_and_keeps_the_calibration():
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(header=Header(frame_id="cam_optical"), height=48, width=80,
                      distortion_model="plumb_bob", k=[500.0, 0, 40, 0, 500.0, 24, 0, 0, 1])
    answered = camera_info_for(HEADER, info)
    assert answered.header == HEADER and info.header.frame_id == "cam_optical"
    assert (answered.height, answered.width, list(answered.k)) == (48, 80, list(info.k))


def test_camera_info_of_a_model_resolution_score_is_scaled_to_it():
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(header=Header(frame_id="cam_optical"), height=1080, width=1920,
                      distortion_model="plumb_bob", d=[0.1, 0, 0, 0, 0],
                      k=[1000.0, 0, 959.5, 0, 1000.0, 539.5, 0, 0, 1],
                      p=[1000.0, 0, 959.5, 0, 0, 1000.0, 539.5, 0, 0, 0, 1, 0])
    answered = camera_info_for(HEADER, info, (518, 924))
    assert (answered.height, answered.width) == (518, 924)
    # The principal point at the image centre stays at the centre of the resized image.
    assert answered.k[2] == pytest.approx(461.5) and answered.k[5] == pytest.approx(258.5)
    assert answered.k[0] == pytest.approx(1000.0 * 924 / 1920)
    assert list(answered.p[:3]) == list(answered.k[:3])
    assert list(answered.d) == list(info.d) and (info.height, info.k[0]) == (1080, 1000.0)


def test_camera_info_of_a_letterboxed_or_cropped_score_follows_its_window():
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(header=Header(frame_id="cam_optical"), height=1080, width=1440,
                      k=[1000.0, 0, 719.5, 0, 1000.0, 600.0, 0, 0, 1],
                      p=[1000.0, 0, 719.5, 0, 0, 1000.0, 600.0, 0, 0, 0, 1, 0])
    letterbox = camera_info_for(HEADER, info, (518, 924), "letterbox")
    assert (letterbox.height, letterbox.width) == (518, 691)  # the scored window only
    assert letterbox.k[2] == pytest.approx(345.0)  # the centre column stays centred
    assert letterbox.k[0] == pytest.approx(1000.0 * 691 / 1440)
    crop = camera_info_for(HEADER, info, (518, 924), "crop")
    assert (crop.height, crop.width) == (518, 924)
    # rows 136..943 are scaled to 518: cy moves up by the crop's top, then scales
    assert crop.k[5] == pytest.approx((600.0 - 136 + 0.5) * 518 / 807 - 0.5)
    assert crop.k[4] == pytest.approx(1000.0 * 518 / 807)
    assert list(crop.p[:3]) == list(crop.k[:3])


def test_maps_in_message_memory_become_the_message_data_without_a_copy():
    from ood_perception.core.message_buffers import message_array

    score = message_array((6, 4), np.float32)
    score[...] = np.arange(24, dtype=np.float32).reshape(6, 4)
    message = image_message(HEADER, score, "32FC1")
    assert np.shares_memory(np.frombuffer(message.data, np.float32), score)
    plain = np.ones((6, 4), np.float32)  # any other array is copied once
    assert not np.shares_memory(
        np.frombuffer(image_message(HEADER, plain, "32FC1").data, np.float32), plain)
