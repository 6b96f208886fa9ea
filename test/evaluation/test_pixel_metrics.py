"""Streaming pixel metrics equal scikit-learn on the same pixels, with ties and ignore labels."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ood_perception.errors import ConfigurationError
from ood_perception.evaluation.pixel_metrics import PixelMetrics, downsample_curve


def _frames(rng, count, shape=(24, 32), levels=None, anomaly_rate=0.1, ignore_rate=0.05):
    frames = []
    for _ in range(count):
        label = (rng.random(shape) < anomaly_rate).astype(np.uint8)
        label[rng.random(shape) < ignore_rate] = 255
        score = rng.normal(size=shape).astype(np.float32) + 1.5 * (label == 1)
        if levels is not None:
            score = np.round(score * levels) / levels
        frames.append((score.astype(np.float32), label))
    return frames


def _direct(frames):
    scores = np.concatenate([s[lab != 255] for s, lab in frames])
    labels = np.concatenate([lab[lab != 255] for _, lab in frames])
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return {
        "ap": average_precision_score(labels, scores),
        "auroc": roc_auc_score(labels, scores),
        "fpr95": fpr[np.argmax(tpr >= 0.95)],
    }


def _streamed(frames, **kwargs):
    metrics = PixelMetrics(**kwargs)
    for score, label in frames:
        metrics.update(score, label)
    return metrics


@pytest.mark.parametrize("levels", [None, 4, 1])
def test_equals_sklearn_over_many_files(levels):
    frames = _frames(np.random.default_rng(0), 40, levels=levels)
    metrics = _streamed(frames, merge_every=500)  # forces many merges
    summary = metrics.summary()
    expected = _direct(frames)
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value, abs=1e-6), key
    if levels == 1:
        assert summary["distinct_scores"] < 20  # heavy ties really happened
    assert summary["frames"] == 40
    ignored = sum(int((lab == 255).sum()) for _, lab in frames)
    assert summary["ignored_pixels"] == ignored


def test_frames_without_anomalies_and_fully_ignored():
    rng = np.random.default_rng(1)
    frames = _frames(rng, 6)
    frames.append((rng.normal(size=(24, 32)).astype(np.float32), np.zeros((24, 32), np.uint8)))
    frames.append((rng.normal(size=(24, 32)).astype(np.float32), np.full((24, 32), 255, np.uint8)))
    summary = _streamed(frames).summary()
    expected = _direct(frames)
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value, abs=1e-6), key


def test_no_positive_pixels_gives_nan_ap_and_fpr_one():
    metrics = PixelMetrics()
    metrics.update(np.ones((4, 4), np.float32), np.zeros((4, 4), np.uint8))
    assert np.isnan(metrics.ap()) and np.isnan(metrics.auroc())
    assert metrics.fpr_at_tpr(0.95) == 1.0


def test_merge_from_equals_single_pass():
    frames = _frames(np.random.default_rng(2), 10, levels=8)
    left, right = _streamed(frames[:4]), _streamed(frames[4:])
    left.merge_from(right)
    assert left.ap() == pytest.approx(_streamed(frames).ap(), abs=1e-12)
    assert left.frames == 10


def test_operating_points_match_masks():
    frames = _frames(np.random.default_rng(3), 5, levels=10)
    metrics = _streamed(frames)
    point = metrics.point_at_tpr(0.9)
    scores = np.concatenate([s[lab != 255] for s, lab in frames])
    labels = np.concatenate([lab[lab != 255] for _, lab in frames])
    called = scores > np.float32(point.threshold)
    assert called[labels == 1].mean() == pytest.approx(point.tpr)
    assert point.tpr >= 0.9
    # one step higher no longer reaches the target
    assert (scores > np.float32(point.key))[labels == 1].mean() < 0.9
    budget = metrics.point_at_fpr(0.05)
    called = scores > np.float32(budget.threshold)
    assert called[labels == 0].mean() == pytest.approx(budget.fpr) and budget.fpr <= 0.05
    fixed = metrics.point_at_threshold(0.5)
    called = scores > np.float32(0.5)
    tp = int((called & (labels == 1)).sum())
    fp = int((called & (labels == 0)).sum())
    fn = int((~called & (labels == 1)).sum())
    assert fixed.iou == pytest.approx(tp / (tp + fp + fn))


def test_threshold_sweep_is_mean_over_hundred_thresholds():
    rng = np.random.default_rng(4)
    label = (rng.random((30, 30)) < 0.2).astype(np.uint8)
    score = np.clip(rng.random((30, 30)) * 0.6 + 0.4 * label, 0, 1).astype(np.float32)
    metrics = PixelMetrics()
    metrics.update(score, label)
    ious, f1s = [], []
    for k in range(100):
        called = score > np.float32(k / 100)
        tp = (called & (label == 1)).sum()
        fp = (called & (label == 0)).sum()
        fn = (~called & (label == 1)).sum()
        ious.append(tp / (tp + fp + fn))
        f1s.append(2 * tp / (2 * tp + fp + fn))
    sweep = metrics.threshold_sweep()
    assert sweep["auiou"] == pytest.approx(np.mean(ious), abs=1e-9)
    assert sweep["mean_f1"] == pytest.approx(np.mean(f1s), abs=1e-9)


def test_float16_keys_bound_table_and_equal_rounded_scores():
    frames = _frames(np.random.default_rng(5), 4, shape=(64, 64))
    metrics = _streamed(frames, key_dtype="float16")
    rounded = [(s.astype(np.float16).astype(np.float32), lab) for s, lab in frames]
    assert metrics.ap() == pytest.approx(_direct(rounded)["ap"], abs=1e-9)
    assert metrics.distinct_scores <= 63488


def test_bad_inputs_raise_typed_errors():
    metrics = PixelMetrics()
    with pytest.raises(ConfigurationError):
        metrics.update(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.uint8))
    with pytest.raises(ConfigurationError):
        metrics.update(np.full((2, 2), np.nan, np.float32), np.zeros((2, 2), np.uint8))
    with pytest.raises(ConfigurationError):
        PixelMetrics(key_dtype="int8")


def test_downsample_curve_keeps_ends():
    x = np.linspace(0, 1, 10_000)
    dx, dy = downsample_curve(x, x**2, points=100)
    assert np.allclose(dy, dx**2)
    assert dx.size <= 100 and dx[0] == 0 and dx[-1] == 1


def test_merged_shard_states_equal_one_pass_exactly():
    frames = _frames(np.random.default_rng(7), 9)  # continuous scores: every key distinct
    whole = _streamed(frames)
    merged = PixelMetrics()
    for start in range(0, 9, 4):  # shards as workers would send them, in any order
        shard = _streamed(frames[start:start + 4])
        merged.merge_from(PixelMetrics.from_state(shard.state()))
    assert merged.summary() == whole.summary()
    assert merged.threshold_sweep() == whole.threshold_sweep()
    assert np.array_equal(merged.curve().thresholds, whole.curve().thresholds)


def test_merging_other_key_precisions_is_refused():
    with pytest.raises(ConfigurationError, match="key precision"):
        PixelMetrics().merge_from(PixelMetrics(key_dtype="float16"))
