"""postprocess: threshold, min area, gating with dilation, component stats, overlay, config;
the model-resolution path against the full-size one."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pytest

from ood_perception.core import postprocess as postprocess_module
from ood_perception.core.frames import BgrFrame
from ood_perception.core.postprocess import (
    PostprocessConfig,
    normalise_score,
    postprocess,
    postprocess_model_map,
    render_overlay,
)
from ood_perception.core.preprocess import resize_classes, resize_score
from ood_perception.errors import ConfigurationError


def two_blobs() -> np.ndarray:
    """40x60 map: a 10x10 blob (score 0.8, one pixel 0.95) and a 2x2 blob (0.9)."""
    score = np.zeros((40, 60), np.float32)
    score[5:15, 10:20] = 0.8
    score[7, 12] = 0.95
    score[30:32, 50:52] = 0.9
    return score


def test_threshold_and_min_area():
    result = postprocess(two_blobs(), None, PostprocessConfig(0.5, min_obstacle_area=10))
    assert result.mask.dtype == np.uint8 and set(np.unique(result.mask)) == {0, 255}
    assert result.mask[5:15, 10:20].all() and not result.mask[30:32, 50:52].any()
    assert len(result.obstacles) == 1
    obstacle = result.obstacles[0]
    assert obstacle.id == 1 and obstacle.area == 100 and obstacle.bbox == (10, 5, 10, 10)
    assert obstacle.centroid == pytest.approx((14.5, 9.5))
    assert obstacle.score_max == pytest.approx(0.95)
    assert obstacle.score_mean == pytest.approx((99 * 0.8 + 0.95) / 100)


def test_small_blob_kept_with_zero_area_and_ordered_by_area():
    result = postprocess(two_blobs(), None, PostprocessConfig(0.5, min_obstacle_area=0))
    assert [o.area for o in result.obstacles] == [100, 4]
    assert [o.id for o in result.obstacles] == [1, 2]
    assert int((result.mask > 0).sum()) == 104


def test_threshold_is_strict_and_nan_never_counts():
    score = np.full((10, 10), 0.5, np.float32)
    score[0, 0] = np.nan
    result = postprocess(score, None, PostprocessConfig(0.5, min_obstacle_area=0))
    assert not result.mask.any() and result.obstacles == []


def test_eight_connectivity_joins_diagonals():
    score = np.zeros((10, 10), np.float32)
    score[2, 2] = score[3, 3] = score[4, 4] = 1.0
    result = postprocess(score, None, PostprocessConfig(0.5, min_obstacle_area=3))
    assert len(result.obstacles) == 1 and result.obstacles[0].area == 3


def test_empty_frame_has_empty_mask_and_no_obstacles():
    result = postprocess(np.zeros((30, 40), np.float32), None, PostprocessConfig(0.5))
    assert result.mask.shape == (30, 40) and not result.mask.any() and result.obstacles == []


def whole_frame_reference(score: np.ndarray, config: PostprocessConfig):
    """Mask and (area, bbox, centroid, score max) per kept blob from labelling the whole
    frame, for comparison."""
    binary = (score > config.score_threshold).astype(np.uint8)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    kept = [label for label in range(1, count)
            if stats[label, cv2.CC_STAT_AREA] >= max(config.min_obstacle_area, 1)]
    mask = np.isin(labels, kept).astype(np.uint8) * 255
    blobs = [(int(stats[label, cv2.CC_STAT_AREA]), tuple(int(v) for v in stats[label, :4]),
              tuple(centroids[label]), float(score[labels == label].max())) for label in kept]
    return mask, blobs


@pytest.mark.parametrize("seed", range(6))
def test_labelling_inside_the_foreground_box_matches_the_whole_frame(seed: int):
    rng = np.random.default_rng(seed)
    score = np.zeros((90, 120), np.float32)
    for _ in range(12):  # rectangles of random size, some on the frame's edges, some equal
        top, left = rng.integers(0, 90), rng.integers(0, 120)
        side = rng.integers(1, 15) if seed % 2 else 3
        score[top:top + side, left:left + rng.integers(1, 15)] = rng.random()
    config = PostprocessConfig(0.3, min_obstacle_area=2, max_obstacles=4)
    result = postprocess(score, None, config)
    mask, blobs = whole_frame_reference(score, config)
    np.testing.assert_array_equal(result.mask, mask)
    ranked = sorted(blobs, key=lambda blob: (-blob[0], blob[1][1], blob[1][0]))[:4]
    assert [(o.area, o.bbox) for o in result.obstacles] == [(a, b) for a, b, _, _ in ranked]
    for obstacle, (_, _, centroid, score_max) in zip(result.obstacles, ranked, strict=True):
        assert obstacle.centroid == pytest.approx(centroid)
        assert obstacle.score_max == pytest.approx(score_max)


def test_equal_areas_rank_topmost_then_leftmost():
    """OpenCV numbers labels in 2x2 blocks, so its order depends on where the box starts."""
    score = np.zeros((10, 40), np.float32)
    for row, col in ((1, 11), (3, 26), (4, 7)):
        score[row, col] = 1.0
    result = postprocess(score, None, PostprocessConfig(0.5, min_obstacle_area=1,
                                                        max_obstacles=2))
    assert [o.bbox[:2] for o in result.obstacles] == [(11, 1), (26, 3)]


def test_more_components_than_16_bit_labels_count():
    score = np.zeros((600, 600), np.float32)
    score[::2, ::2] = 1.0  # 90,000 isolated pixels
    result = postprocess(score, None, PostprocessConfig(0.5, min_obstacle_area=1,
                                                        max_obstacles=3))
    assert int((result.mask > 0).sum()) == 90_000 and len(result.obstacles) == 3


def test_max_obstacles_caps_list_not_mask():
    score = np.zeros((20, 60), np.float32)
    for index in range(5):
        score[5:5 + index + 2, index * 10:index * 10 + 3] = 1.0
    result = postprocess(score, None, PostprocessConfig(0.5, min_obstacle_area=1,
                                                        max_obstacles=2))
    assert [o.area for o in result.obstacles] == [18, 15]
    assert int((result.mask > 0).sum()) == 3 * (2 + 3 + 4 + 5 + 6)


def test_gating_keeps_anomalies_on_or_next_to_road():
    score = np.zeros((40, 40), np.float32)
    score[5:10, 5:10] = 1.0  # in the sky, far from the road
    score[16:19, 20:25] = 1.0  # 2 px above the road
    score[30:35, 5:10] = 1.0  # on the road
    semantic = np.full((40, 40), 10, np.uint8)
    semantic[21:, :] = 0
    base = {"score_threshold": 0.5, "min_obstacle_area": 1, "gating_classes": (0,)}
    tight = postprocess(score, semantic, PostprocessConfig(**base, gating_dilation=0))
    assert [o.bbox for o in tight.obstacles] == [(5, 30, 5, 5)]
    loose = postprocess(score, semantic, PostprocessConfig(**base, gating_dilation=3))
    boxes = sorted(o.bbox for o in loose.obstacles)
    assert (5, 30, 5, 5) in boxes and len(boxes) == 2
    assert not loose.mask[5:10, 5:10].any()
    ungated = postprocess(score, None, PostprocessConfig(**base))
    assert len(ungated.obstacles) == 3


@pytest.mark.parametrize(
    "changes",
    [{"score_threshold": math.nan}, {"score_threshold": math.inf},
     {"score_threshold": "0.5"}, {"min_obstacle_area": -1}, {"min_obstacle_area": 1.5},
     {"gating_dilation": -2}, {"max_obstacles": 0}, {"gating_classes": [0]},
     {"gating_classes": (300,)}, {"gating_classes": (True,)}],
)
def test_config_validation(changes: dict):
    with pytest.raises(ConfigurationError):
        PostprocessConfig(**changes)


def test_normalise_score_over_range():
    score = np.array([[-1.0, 0.0, 0.5, 1.0, 2.0, np.nan]], np.float32)
    np.testing.assert_array_equal(normalise_score(score, (0.0, 1.0))[0], [0, 0, 128, 255, 255, 0])
    auto = normalise_score(score)
    assert auto[0, 0] == 0 and auto[0, 4] == 255


def test_render_overlay_shape_dtype_and_contour():
    rgb = np.full((40, 60, 3), 128, np.uint8)
    score = two_blobs()
    result = postprocess(score, None, PostprocessConfig(0.5, min_obstacle_area=10))
    overlay = render_overlay(rgb, score, result.mask, (0.0, 1.0))
    assert overlay.shape == (40, 60, 3) and overlay.dtype == np.uint8
    assert tuple(overlay[5, 10]) == (0, 0, 255)  # red contour on the blob's corner (BGR)
    assert tuple(overlay[25, 30]) != tuple(overlay[10, 15])  # colours follow the score
    np.testing.assert_array_equal(
        render_overlay(BgrFrame(rgb[:, :, ::-1]), score, result.mask, (0.0, 1.0)), overlay)
    with pytest.raises(ConfigurationError):
        render_overlay(rgb, score, result.mask, alpha=1.5)


def test_full_hd_postprocess_is_fast():
    rng = np.random.default_rng(3)
    score = rng.random((1080, 1920), dtype=np.float32) * 0.4
    score[400:600, 800:1100] = 0.9
    config = PostprocessConfig(0.5, min_obstacle_area=50)
    postprocess(score, None, config)
    start = time.perf_counter()
    result = postprocess(score, None, config)
    elapsed_ms = (time.perf_counter() - start) * 1000
    assert len(result.obstacles) == 1 and result.obstacles[0].area == 200 * 300
    assert elapsed_ms < 200


def model_map(shape: tuple[int, int], seed: int, blobs: int) -> np.ndarray:
    """A smooth low background (< 0.3) with `blobs` peaks up to ~1 at random places."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    score = rng.random(shape, dtype=np.float32) * 0.3
    for _ in range(blobs):
        centre = rng.random(2) * shape
        radius = rng.uniform(1.0, 6.0)
        peak = np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / radius ** 2)
        score = np.maximum(score, rng.uniform(0.6, 1.2) * peak)
    return score


def check_model_map_matches_full_size(score, semantic, size, config):
    """postprocess_model_map == postprocess of the resized maps, but for pixels within 1e-5
    of the threshold (the stated tolerance: OpenCV's float32 resize rounds there)."""
    full_score = resize_score(score, size)
    full_classes = resize_classes(semantic, size) if semantic is not None else None
    reference = postprocess(full_score, full_classes, config)
    ours = postprocess_model_map(score, semantic, size, config)
    assert ours.mask.shape == size and ours.mask.dtype == np.uint8
    differs = ours.mask != reference.mask
    assert np.all(np.abs(full_score[differs] - config.score_threshold) < 1e-5)
    if not differs.any():
        assert [(o.area, o.bbox) for o in ours.obstacles] == [
            (o.area, o.bbox) for o in reference.obstacles]
        for mine, theirs in zip(ours.obstacles, reference.obstacles, strict=True):
            assert mine.centroid == pytest.approx(theirs.centroid)
            assert mine.score_max == pytest.approx(theirs.score_max, abs=1e-6)
            assert mine.score_mean == pytest.approx(theirs.score_mean, abs=1e-5)
    return ours, reference


@pytest.mark.parametrize("seed", range(8))
def test_model_map_postprocess_matches_full_size(seed: int):
    shape, size = [((37, 66), (1080, 1920)), ((64, 96), (480, 640)), ((52, 92), (100, 180)),
                   ((64, 96), (64, 96))][seed % 4]
    score = model_map(shape, seed, blobs=seed % 3 + 1)
    semantic = np.where(np.arange(shape[0])[:, None] < shape[0] // 2, 10, 0).astype(np.uint8)
    semantic = np.broadcast_to(semantic, shape).copy()
    gated = {"gating_classes": (0,), "gating_dilation": [0, 3, 25][seed % 3]} if seed > 3 \
        else {}
    config = PostprocessConfig(0.5, min_obstacle_area=[0, 20, 60][seed % 3], **gated)
    ours, reference = check_model_map_matches_full_size(score, semantic, size, config)
    assert reference.obstacles or gated  # the ungated maps do hold obstacles


def test_model_map_postprocess_past_the_window_limit_uses_the_full_maps():
    score = np.zeros((37, 66), np.float32)
    score[0:3, 0:3] = score[-3:, -3:] = 1.0  # opposite corners: the window is the frame
    ours, _ = check_model_map_matches_full_size(score, None, (1080, 1920),
                                                PostprocessConfig(0.5, min_obstacle_area=10))
    assert len(ours.obstacles) == 2


def test_model_map_postprocess_without_anomalies_fills_nothing():
    mask = np.zeros((1080, 1920), np.uint8)
    score = np.full((37, 66), 0.5, np.float32)  # equal to the threshold: strict
    score[3, 3] = np.nan
    result = postprocess_model_map(score, None, (1080, 1920), PostprocessConfig(0.5), mask=mask)
    assert result.mask is mask and not mask.any() and result.obstacles == []
    with pytest.raises(ConfigurationError, match="semantic shape"):
        postprocess_model_map(score, np.zeros((10, 10), np.uint8), (1080, 1920),
                              PostprocessConfig(0.5))


def test_model_map_postprocess_does_no_frame_size_work_without_obstacles(monkeypatch):
    """What makes it cheap: with no model pixel above the threshold, no frame-size score,
    window or labelling is computed (counted, not timed, so a busy machine cannot fail it)."""
    calls = []
    for name in ("resize_score", "resize_classes", "score_window", "label_blobs"):
        def counted(*args, _name=name, _work=getattr(postprocess_module, name), **kwargs):
            calls.append(_name)
            return _work(*args, **kwargs)

        monkeypatch.setattr(postprocess_module, name, counted)
    config = PostprocessConfig(0.5, min_obstacle_area=50)
    score = model_map((518, 924), 0, blobs=0)
    result = postprocess_model_map(score, None, (1080, 1920), config)
    assert calls == [] and result.mask.shape == (1080, 1920) and not result.mask.any()
    assert result.obstacles == []
    score[200, 300] = 0.9  # one anomalous model pixel: only its window is scored
    postprocess_model_map(score, None, (1080, 1920), config)
    assert calls == ["score_window", "label_blobs"]
