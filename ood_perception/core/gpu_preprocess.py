"""The frame path on the backend's GPU: upload, resize and batch; maps back to frame size.

Frames cross the bus once each way: uint8 frames go up through reused page-locked staging
buffers (one copy per group of same-size cameras; bgr8 frames as they arrived, their
channels swapped on the device), are resized and stacked on the GPU, and only what is
published comes down, into page-locked host memory (`to_host`): the maps asked for, and the
obstacle mask's window (`gpu_postprocess`). The functions are device-agnostic torch code, so
the same code runs (and is tested) on CPU.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ood_perception.core.frames import BgrFrame, Frame
from ood_perception.core.placement import UNSEEN_CLASS, Placement, placement
from ood_perception.core.preprocess import nearest_sources
from ood_perception.errors import ConfigurationError

# Staging buffers kept per frame-group shape; more shapes than this evict the oldest.
MAX_STAGING_SHAPES = 8
# Most one antialiased resize shrinks a side by: CUDA's antialiased bilinear kernel keeps
# each output's filter weights in shared memory and fails for large factors (pytorch/vision
# issue 7671: 941 -> 10 pixels), so larger shrinks go in passes of at most this factor.
MAX_ANTIALIAS_FACTOR = 8


def group_by_size(frames: Sequence[Frame]) -> dict[tuple[int, int, bool], list[int]]:
    """Frame indices per (height, width, is BGR), in first-seen order: one upload and resize
    each."""
    groups: dict[tuple[int, int, bool], list[int]] = {}
    for index, frame in enumerate(frames):
        bgr = isinstance(frame, BgrFrame)
        pixels = frame.pixels if bgr else frame
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ConfigurationError(
                f"frame {index}: expected HxWx3 uint8 RGB, got {pixels.dtype} {pixels.shape}")
        groups.setdefault((*pixels.shape[:2], bgr), []).append(index)
    return groups


class PinnedUploader:
    """numpy frames -> [N, H, W, 3] uint8 tensors on `device` via reused staging buffers.

    On CUDA the staging buffers are page-locked, so the copy is a DMA that does not block
    the CPU; a buffer is reused only after its previous copy finished. On CPU the frames are
    stacked into a plain tensor.
    """

    def __init__(self, device: str | torch.device):
        self.device = torch.device(device)
        self._cuda = self.device.type == "cuda"
        self._staging: dict[tuple[int, ...], tuple[torch.Tensor, torch.cuda.Event]] = {}

    def _buffer(self, shape: tuple[int, ...]) -> torch.Tensor:
        if shape in self._staging:
            buffer, done = self._staging.pop(shape)
            done.synchronize()
            return buffer
        if len(self._staging) >= MAX_STAGING_SHAPES:
            _, done = self._staging.pop(next(iter(self._staging)))
            done.synchronize()
        return torch.empty(shape, dtype=torch.uint8, pin_memory=True)

    def upload(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """Same-size HxWx3 uint8 frames -> [N, H, W, 3] uint8 on the device (async on CUDA)."""
        if not self._cuda:
            return torch.from_numpy(np.stack(frames))
        shape = (len(frames), *frames[0].shape)
        buffer = self._buffer(shape)
        host = buffer.numpy()
        for index, frame in enumerate(frames):
            host[index] = frame
        device_copy = buffer.to(self.device, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(self.device))
        self._staging[shape] = (buffer, done)
        return device_copy


def antialias_passes(source: tuple[int, int], target: tuple[int, int]) -> list[tuple[int, int]]:
    """The sizes of the successive antialiased resizes from `source` to `target`, each
    shrinking a side by at most MAX_ANTIALIAS_FACTOR; the last is `target`."""
    passes, current = [], tuple(source)
    while current != tuple(target):
        current = tuple(max(want, -(-side // MAX_ANTIALIAS_FACTOR)) if want < side else want
                        for side, want in zip(current, target, strict=True))
        passes.append(current)
    return passes


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> uint8 [N, h, w, 3] at `size`; antialiased bilinear where it
    shrinks (close to OpenCV's INTER_AREA of the CPU path; in passes beyond
    MAX_ANTIALIAS_FACTOR), plain bilinear where it grows."""
    if tuple(images.shape[1:3]) == tuple(size):
        return images
    resized = images.permute(0, 3, 1, 2).float()  # NCHW view; float() keeps channels-last
    for step in antialias_passes(tuple(images.shape[1:3]), tuple(size)):
        resized = F.interpolate(resized, size=step, mode="bilinear", align_corners=False,
                                antialias=True)
    return resized.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def resize_score(score: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """float32 [H, W] or [N, H, W] -> `size`, bilinear as OpenCV's INTER_LINEAR."""
    if tuple(score.shape[-2:]) == tuple(size):
        return score
    batched = score.reshape(-1, 1, *score.shape[-2:]).float()
    out = F.interpolate(batched, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*score.shape[:-2], *size)


def resize_classes(classes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [H, W] or [N, H, W] class ids -> `size`, nearest exactly as OpenCV's
    INTER_NEAREST on the host path, so no class is invented."""
    if tuple(classes.shape[-2:]) == tuple(size):
        return classes
    height, width = classes.shape[-2:]
    rows = _nearest_sources(height, size[0], classes.device)
    cols = _nearest_sources(width, size[1], classes.device)
    return classes[..., rows[:, None], cols[None, :]]


@functools.lru_cache(maxsize=32)
def _nearest_sources(source: int, target: int, device: torch.device) -> torch.Tensor:
    """`preprocess.nearest_sources` on the device, uploaded once per size pair, so both frame
    paths publish the same classes."""
    return torch.from_numpy(nearest_sources(source, target).copy()).to(device)


def upload_groups(frames: Sequence[Frame],
                  uploader: PinnedUploader) -> list[tuple[list[int], torch.Tensor]]:
    """Frames -> (frame indices, [N, H, W, 3] RGB device tensor) per size: cameras of one
    model usually share a size, so they go up in one copy; BGR frames are flipped there."""
    groups = []
    for (_, _, bgr), indices in group_by_size(frames).items():
        if bgr:
            images = uploader.upload([frames[i].pixels for i in indices]).flip(-1)
        else:
            images = uploader.upload([frames[i] for i in indices])
        groups.append((indices, images))
    return groups


def place_images(images: torch.Tensor, size: tuple[int, int],
                 resize_mode: str = "stretch") -> torch.Tensor:
    """uint8 [N, H, W, 3] -> uint8 [N, h, w, 3] model input at `size`, placed as
    `preprocess.make_batch` places them (zero padding for the same reason)."""
    place = placement(resize_mode, tuple(images.shape[1:3]), tuple(size))
    frame_box, model_box = place.frame_box, place.model_box
    resized = resize_images(images[:, frame_box.rows, frame_box.cols], model_box.size)
    if place.whole_model:
        return resized.contiguous()
    batch = images.new_zeros((images.shape[0], *size, 3))
    batch[:, model_box.rows, model_box.cols] = resized
    return batch


def score_to_frame(score: torch.Tensor, place: Placement, fill: float) -> torch.Tensor:
    """`preprocess.score_to_frame` on the device: [h, w] model map -> frame-size map."""
    return _to_frame(score, place, fill, resize_score)


def classes_to_frame(classes: torch.Tensor, place: Placement) -> torch.Tensor:
    """`preprocess.classes_to_frame` on the device (the same nearest sources)."""
    return _to_frame(classes, place, UNSEEN_CLASS, resize_classes)


def _to_frame(model_map: torch.Tensor, place: Placement, fill: float, resize) -> torch.Tensor:
    """The scored window of `model_map` resized back to its frame window, `fill` elsewhere."""
    valid = resize(model_map[place.model_box.rows, place.model_box.cols], place.frame_box.size)
    if place.whole_frame:
        return valid
    out = valid.new_full(place.frame_size, fill)
    out[place.frame_box.rows, place.frame_box.cols] = valid
    return out


def make_batch(groups: Sequence[tuple[list[int], torch.Tensor]],
               size: tuple[int, int], resize_mode: str = "stretch") -> torch.Tensor:
    """Uploaded groups -> uint8 [B, h, w, 3] model batch in frame order, resized (and placed
    as `resize_mode` says) on the device."""
    if not groups:
        raise ConfigurationError("make_batch needs at least one frame")
    if len(groups) == 1:
        return place_images(groups[0][1], size, resize_mode)
    count = sum(len(indices) for indices, _ in groups)
    device = groups[0][1].device
    batch = torch.empty((count, *size, 3), dtype=torch.uint8, device=device)
    for indices, images in groups:
        resized = place_images(images, size, resize_mode)
        for position, index in enumerate(indices):  # plain copies: no index tensor to upload
            batch[index].copy_(resized[position])
    return batch


def to_host(tensor: torch.Tensor) -> np.ndarray:
    """Device tensor -> numpy array in page-locked memory, filled asynchronously: read it after
    `synchronize`. A fresh block per call (torch's caching host allocator), so results handed
    out earlier are never overwritten."""
    if tensor.device.type != "cuda":
        return tensor.numpy()
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    return host.numpy()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU); stage timings end here."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
