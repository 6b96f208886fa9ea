"""Where a frame's pixels sit in the model input: stretched, letterboxed or centre-cropped.

One `Placement` per (mode, frame size, model size) says which window of the frame is resized
to which window of the model input; the host path (`preprocess`), the device path
(`gpu_preprocess`) and the model-resolution calibration (`intrinsics`) all read it, so the
maps taken back to the frame undo exactly what the batch did.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ood_perception.errors import ConfigurationError

# stretch: the whole frame to the whole input (aspect changes); letterbox: the whole frame at
# the input's aspect, padded; crop: the centre of the frame at the input's aspect, scaled.
RESIZE_MODES = ("stretch", "letterbox", "crop")
# Class id of frame pixels the model never saw (outside a crop): Cityscapes' ignore label.
UNSEEN_CLASS = 255


@dataclass(frozen=True)
class Box:
    """A window of an image in pixels: top, left, height, width."""

    top: int
    left: int
    height: int
    width: int

    @property
    def rows(self) -> slice:
        return slice(self.top, self.top + self.height)

    @property
    def cols(self) -> slice:
        return slice(self.left, self.left + self.width)

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width


@dataclass(frozen=True)
class Placement:
    """`frame_box` of a `frame_size` frame is resized to `model_box` of a `model_size` input;
    the rest of the input is zero (letterbox) and the rest of the frame unseen (crop)."""

    frame_size: tuple[int, int]
    model_size: tuple[int, int]
    frame_box: Box
    model_box: Box

    @property
    def whole_frame(self) -> bool:
        return self.frame_box.size == tuple(self.frame_size)

    @property
    def whole_model(self) -> bool:
        return self.model_box.size == tuple(self.model_size)


def _centred(outer: tuple[int, int], inner: tuple[int, int]) -> Box:
    return Box((outer[0] - inner[0]) // 2, (outer[1] - inner[1]) // 2, *inner)


@functools.lru_cache(maxsize=64)
def placement(mode: str, frame_size: tuple[int, int], model_size: tuple[int, int]) -> Placement:
    """The `Placement` of a frame (height, width) in a model input (height, width).

    letterbox scales by the smaller ratio, so one side fills the input and the other is
    padded evenly; crop scales by the larger, so the input is filled from the frame's centre.
    Either window is rounded to whole pixels: the side that fits is exact.
    """
    if mode not in RESIZE_MODES:
        raise ConfigurationError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, "
                                 f"got {mode!r}")
    frame_size, model_size = tuple(frame_size), tuple(model_size)
    if min(*frame_size, *model_size) <= 0:
        raise ConfigurationError(f"image sizes must be positive, got {frame_size} -> "
                                 f"{model_size}")
    whole_frame, whole_model = Box(0, 0, *frame_size), Box(0, 0, *model_size)
    ratios = [model / frame for model, frame in zip(model_size, frame_size, strict=True)]
    if mode == "letterbox":
        scale = min(ratios)
        inner = tuple(min(model, max(1, round(frame * scale)))
                      for frame, model in zip(frame_size, model_size, strict=True))
        return Placement(frame_size, model_size, whole_frame, _centred(model_size, inner))
    if mode == "crop":
        scale = max(ratios)
        inner = tuple(min(frame, max(1, round(model / scale)))
                      for frame, model in zip(frame_size, model_size, strict=True))
        return Placement(frame_size, model_size, _centred(frame_size, inner), whole_model)
    return Placement(frame_size, model_size, whole_frame, whole_model)
