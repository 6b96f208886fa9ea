"""Test fixtures written as a camera driver's recording would be: rosbag2 files of frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ood_perception.io.rosbag import COMPRESSED, IMAGE, image_message, open_writer, typestore


def write_images(
    path: str | Path,
    frames: list[tuple[str, int, np.ndarray]],
    storage: str = "sqlite3",
    encoding: str = "rgb8",
    frame_id: str = "camera",
    compressed_format: str | None = None,
) -> None:
    """A bag of (topic, timestamp ns, RGB frame) messages; header stamp = timestamp.

    `compressed_format` ("jpeg"/"png") writes sensor_msgs/CompressedImage instead.
    """
    store = typestore()
    header_type = store.types["std_msgs/msg/Header"]
    time_type = store.types["builtin_interfaces/msg/Time"]
    with open_writer(path, storage) as writer:
        connections = {}
        for topic, timestamp, rgb in frames:
            msgtype = COMPRESSED if compressed_format else IMAGE
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
            stamp = time_type(sec=timestamp // 10**9, nanosec=timestamp % 10**9)
            header = header_type(stamp=stamp, frame_id=frame_id)
            if compressed_format:
                ok, data = cv2.imencode(
                    f".{'jpg' if compressed_format == 'jpeg' else 'png'}",
                    cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                )
                assert ok, f"cannot encode a frame as {compressed_format}"
                msg = store.types[COMPRESSED](
                    header=header, format=compressed_format, data=data.ravel()
                )
            else:
                msg = image_message(store, header, rgb, encoding)
            writer.write(connections[topic], timestamp, store.serialize_cdr(msg, msgtype))
