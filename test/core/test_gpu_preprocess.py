"""gpu_preprocess on CPU tensors agrees with the OpenCV host path; CUDA-only parts skip here."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from ood_perception.core import gpu_preprocess as gpu
from ood_perception.core.frames import BgrFrame
from ood_perception.core.preprocess import make_batch as host_make_batch
from ood_perception.core.preprocess import resize_classes as host_resize_classes
from ood_perception.core.preprocess import resize_score as host_resize_score
from ood_perception.errors import ConfigurationError

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def smooth_frame(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Camera-like RGB: a low-frequency pattern (OpenCV INTER_AREA and antialiased bilinear
    differ on pixel noise, not on image content)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("source", [(1080, 1920), (216, 384), (48, 64), (64, 96)])
def test_resize_images_close_to_host_resize(source):
    frame = smooth_frame(source, 0)
    ours = gpu.resize_images(torch.from_numpy(frame)[None], (64, 96))[0].numpy()
    theirs = host_make_batch([frame], (64, 96))[0]
    assert ours.shape == theirs.shape and ours.dtype == np.uint8
    difference = np.abs(ours.astype(int) - theirs.astype(int))
    assert difference.mean() < 0.5 and difference.max() <= 2
    if source == (64, 96):
        assert gpu.resize_images(torch.from_numpy(frame)[None], (64, 96)).data_ptr() == (
            torch.from_numpy(frame).data_ptr())


def test_resize_score_equals_opencv_bilinear():
    score = np.random.default_rng(1).normal(size=(37, 74)).astype(np.float32)
    for size in [(1080, 1920), (20, 30)]:
        ours = gpu.resize_score(torch.from_numpy(score), size).numpy()
        np.testing.assert_allclose(ours, host_resize_score(score, size), atol=1e-4)
    batched = gpu.resize_score(torch.from_numpy(np.stack([score, -score])), (90, 160))
    assert batched.shape == (2, 90, 160)
    np.testing.assert_allclose(batched[1].numpy(), -host_resize_score(score, (90, 160)),
                               atol=1e-4)


@pytest.mark.parametrize("source", [(37, 74), (336, 672), (518, 1036)])
@pytest.mark.parametrize("size", [(25, 33), (1080, 1920), (1200, 1920), (5, 7), (481, 641)])
def test_resize_classes_matches_opencv_nearest_exactly(source, size):
    classes = np.random.default_rng(2).integers(0, 19, source, dtype=np.uint8)
    ours = gpu.resize_classes(torch.from_numpy(classes), size).numpy()
    theirs = host_resize_classes(classes, size)
    assert ours.dtype == np.uint8 and ours.shape == size
    np.testing.assert_array_equal(ours, theirs)


def test_upload_groups_batches_cameras_of_one_size_together():
    frames = [smooth_frame((48, 64), i) for i in range(3)] + [smooth_frame((30, 40), 9)]
    frames.insert(1, smooth_frame((30, 40), 8))
    groups = gpu.upload_groups(frames, gpu.PinnedUploader("cpu"))
    assert [indices for indices, _ in groups] == [[0, 2, 3], [1, 4]]
    assert groups[0][1].shape == (3, 48, 64, 3)
    np.testing.assert_array_equal(groups[1][1][0].numpy(), frames[1])
    batch = gpu.make_batch(groups, (48, 64))
    assert batch.shape == (5, 48, 64, 3) and batch.dtype == torch.uint8
    for index in (0, 2, 3):  # already at the model size: untouched, in frame order
        np.testing.assert_array_equal(batch[index].numpy(), frames[index])
    enlarged = gpu.resize_images(torch.from_numpy(frames[4])[None], (48, 64))[0]
    np.testing.assert_array_equal(batch[4].numpy(), enlarged.numpy())


def test_bad_frames_are_refused():
    with pytest.raises(ConfigurationError, match="frame 1"):
        gpu.group_by_size([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)])
    with pytest.raises(ConfigurationError, match="at least one"):
        gpu.make_batch([], (4, 4))


def test_to_host_on_cpu_is_the_tensor_itself():
    tensor = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    array = gpu.to_host(tensor)
    assert isinstance(array, np.ndarray) and array.tolist() == tensor.tolist()


@pytest.mark.gpu
@CUDA
def test_pinned_upload_roundtrip_and_staging_reuse():
    uploader = gpu.PinnedUploader("cuda")
    frames = [smooth_frame((1080, 1920), i) for i in range(2)]
    first = uploader.upload(frames)
    second = uploader.upload([f[::-1].copy() for f in frames])  # reuses the staging buffer
    assert first.device.type == "cuda" and first.shape == (2, 1080, 1920, 3)
    np.testing.assert_array_equal(first.cpu().numpy(), np.stack(frames))
    np.testing.assert_array_equal(second[1].cpu().numpy(), frames[1][::-1])
    host = gpu.to_host(gpu.resize_score(first[:, :, :, 0].float(), (540, 960)))
    gpu.synchronize(first.device)
    cpu_side = gpu.resize_score(first[:, :, :, 0].float().cpu(), (540, 960)).numpy()
    np.testing.assert_allclose(host, cpu_side, atol=1e-3)


@pytest.mark.gpu
@CUDA
def test_large_shrinks_go_in_passes_of_at_most_the_antialias_factor():
    assert gpu.antialias_passes((1080, 1920), (518, 1036)) == [(518, 1036)]
    assert gpu.antialias_passes((941, 941), (10, 10)) == [(118, 118), (15, 15), (10, 10)]
    # A side that grows or stays is reached in the first pass.
    assert gpu.antialias_passes((2000, 50), (20, 100)) == [(250, 100), (32, 100), (20, 100)]
    assert gpu.antialias_passes((64, 64), (64, 64)) == []
    for source, target in (((4000, 3000), (37, 29)), ((941, 941), (10, 10))):
        sizes = [source, *gpu.antialias_passes(source, target)]
        assert all(before[i] <= gpu.MAX_ANTIALIAS_FACTOR * after[i]
                   for before, after in zip(sizes[:-1], sizes[1:], strict=True) for i in (0, 1))


def test_a_large_shrink_in_passes_stays_close_to_one_pass_and_the_host_resize():
    """A 4K camera into a 64x112 input (34x): one antialiased pass works on CPU, and the
    passes land within a grey level of it and of OpenCV's INTER_AREA."""
    frame = smooth_frame((2160, 3840), 2)
    images = torch.from_numpy(frame)[None]
    ours = gpu.resize_images(images, (64, 112))[0].numpy().astype(int)
    one = torch.nn.functional.interpolate(
        images.permute(0, 3, 1, 2).float(), size=(64, 112), mode="bilinear",
        align_corners=False, antialias=True).round()[0].permute(1, 2, 0).numpy()
    host = cv2.resize(frame, (112, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(ours - one).max() <= 1 and np.abs(ours - host).max() <= 2


@CUDA
def test_cuda_shrinks_by_large_factors():
    """One pass of 941 -> 10 fails in CUDA's antialiased kernel (pytorch/vision issue 7671)."""
    frame = torch.from_numpy(smooth_frame((941, 941), 4))[None]
    on_gpu = gpu.resize_images(frame.cuda(), (10, 10)).cpu()
    assert (on_gpu.int() - gpu.resize_images(frame, (10, 10)).int()).abs().max() <= 1


@CUDA
def test_cuda_resize_matches_cpu_resize():
    frame = torch.from_numpy(smooth_frame((1080, 1920), 3))[None]
    on_gpu = gpu.resize_images(frame.cuda(), (518, 1036)).cpu()
    on_cpu = gpu.resize_images(frame, (518, 1036))
    assert (on_gpu.int() - on_cpu.int()).abs().max() <= 1


def test_bgr_frames_are_flipped_on_the_device():
    frame = smooth_frame((48, 64), 5)
    groups = gpu.upload_groups([BgrFrame(frame[:, :, ::-1].copy()), frame],
                               gpu.PinnedUploader("cpu"))
    assert [indices for indices, _ in groups] == [[0], [1]]
    np.testing.assert_array_equal(groups[0][1][0].numpy(), groups[1][1][0].numpy())


@pytest.mark.parametrize("mode", ["letterbox", "crop"])
def test_placed_batch_and_maps_back_match_the_host_path(mode):
    from ood_perception.core.placement import placement
    from ood_perception.core.preprocess import classes_to_frame, score_to_frame

    frame = smooth_frame((480, 640), 7)
    host = host_make_batch([frame], (64, 96), mode)
    device = gpu.make_batch([([0], torch.from_numpy(frame[None].copy()))], (64, 96), mode)
    assert device.shape == host.shape and device.is_contiguous()
    assert np.abs(device.numpy().astype(int) - host.astype(int)).max() <= 3
    if mode == "letterbox":
        assert not device[:, :, :5].any() and not device[:, :, 90:].any()
    place = placement(mode, (480, 640), (64, 96))
    score = np.random.default_rng(8).random((64, 96)).astype(np.float32)
    classes = np.random.default_rng(9).integers(0, 19, (64, 96), dtype=np.uint8)
    np.testing.assert_allclose(gpu.score_to_frame(torch.from_numpy(score), place, -1.0).numpy(),
                               score_to_frame(score, place, -1.0), atol=1e-5)
    np.testing.assert_array_equal(gpu.classes_to_frame(torch.from_numpy(classes), place).numpy(),
                                  classes_to_frame(classes, place))
