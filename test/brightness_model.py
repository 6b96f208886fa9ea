"""A contract graph for ground-projection tests, whose score is the pixel's brightness, and a
bag of a bright box 10 m ahead of a calibrated camera.

score = mean(R, G, B) / 255 in [0, 1] (score_range [0, 1], so the node's default threshold
is 0.5), no semantic output: a bright object on a dark road is the obstacle, and its mask
is exactly the bright pixels (up to the resize to the model's input).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from ood_perception.contract import INPUT_NAME, SCORE_NAME, ModelInfo
from ood_perception.io import rosbag

BOX_TOPIC = "/front/image_raw"


class Brightness(nn.Module):
    """uint8 [B, H, W, 3] -> float32 [B, H, W] brightness in [0, 1]."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.float().mean(dim=3) / 255.0


def export_brightness_model(path: str | Path, input_size: tuple[int, int] = (240, 320)) -> Path:
    """The graph at `input_size` (dynamic batch) with contract metadata; returns `path`."""
    path = Path(path)
    dummy = torch.zeros((1, *input_size, 3), dtype=torch.uint8)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but exact here
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(Brightness().eval(), (dummy,), str(path), input_names=[INPUT_NAME],
                          output_names=[SCORE_NAME], opset_version=17, dynamo=False,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, SCORE_NAME: {0: "batch"}})
    graph = onnx.load(str(path))
    info = ModelInfo(input_height=input_size[0], input_width=input_size[1],
                     model_name="brightness", score_name="brightness", class_names=(),
                     mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0), score_range=(0.0, 1.0),
                     producer="ood_perception test")
    onnx.helper.set_model_props(graph, info.to_metadata())
    onnx.save(graph, str(path))
    return path


def write_box_bag(path: Path, frames: int = 6) -> None:
    """640x480 frames of a bright box whose bottom edge is row 315 (10 m ahead of a camera
    1.5 m up with fx = fy = 500), each after its camera_info."""
    store = rosbag.typestore()
    types = store.types
    pixels = np.full((480, 640, 3), 30, np.uint8)
    pixels[275:316, 300:340] = 255
    with rosbag.open_writer(path) as writer:
        images = writer.add_connection(BOX_TOPIC, rosbag.IMAGE, typestore=store)
        infos = writer.add_connection("/front/camera_info", rosbag.CAMERA_INFO, typestore=store)
        for index in range(frames):
            stamp = 10**9 * (index + 1)
            header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](
                sec=index + 1, nanosec=0), frame_id="front_optical")
            info = types[rosbag.CAMERA_INFO](
                header=header, height=480, width=640, distortion_model="plumb_bob",
                d=np.zeros(5), k=np.array([500.0, 0, 320, 0, 500, 240, 0, 0, 1]),
                r=np.eye(3).ravel(), p=np.array([500.0, 0, 320, 0, 0, 500, 240, 0, 0, 0, 1, 0]),
                binning_x=0, binning_y=0, roi=types["sensor_msgs/msg/RegionOfInterest"](
                    x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
            writer.write(infos, stamp, store.serialize_cdr(info, rosbag.CAMERA_INFO))
            image = rosbag.image_message(store, header, pixels, "rgb8")
            writer.write(images, stamp, store.serialize_cdr(image, rosbag.IMAGE))
