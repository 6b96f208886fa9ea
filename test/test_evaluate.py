"""`ood-perception evaluate` on tiny generated data: JSON equals a direct sklearn computation."""

import json

import cv2
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ood_perception.cli import main


def _write_scores(tmp_path, count=6, shape=(40, 56)):
    rng = np.random.default_rng(7)
    (tmp_path / "scores").mkdir()
    (tmp_path / "labels").mkdir()
    scores, labels = [], []
    for i in range(count):
        label = np.zeros(shape, np.uint8)
        if i % 3:  # some frames without anomalies
            y, x = rng.integers(0, shape[0] - 12), rng.integers(0, shape[1] - 12)
            label[y : y + 12, x : x + 12] = 1
        label[rng.random(shape) < 0.03] = 255
        score = (rng.random(shape) * 0.7 + 0.3 * (label == 1)).astype(np.float32)
        score = np.round(score * 50) / 50  # ties across frames
        np.save(tmp_path / "scores" / f"frame_{i:02d}.npy", score.astype(np.float32))
        cv2.imwrite(str(tmp_path / "labels" / f"frame_{i:02d}.png"), label)
        scores.append(score.astype(np.float32))
        labels.append(label)
    return scores, labels


def test_scores_and_labels_equal_direct_computation(tmp_path, capsys):
    scores, labels = _write_scores(tmp_path)
    out = tmp_path / "result.json"
    code = main(
        [
            "evaluate",
            "--scores",
            str(tmp_path / "scores"),
            "--labels",
            str(tmp_path / "labels"),
            "--json",
            str(out),
            "--report",
            str(tmp_path / "rep"),
            "--worst",
            "2",
        ]
    )
    assert code == 0
    results = json.loads(out.read_text())
    s = np.concatenate([a[b != 255] for a, b in zip(scores, labels, strict=True)])
    y = np.concatenate([b[b != 255] for b in labels])
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    assert results["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-6)
    assert results["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    assert results["fpr95"] == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-6)
    assert 0 <= results["ap"] <= 1 and 0 <= results["fpr95"] <= 1
    assert results["counts"]["frames"] == 6
    assert results["counts"]["positive_pixels"] == int((y == 1).sum())
    components = results["components"]
    assert components["gt_components"] >= 1 and 0 <= components["f1_mean"] <= 1
    for name in ("pr_curve.png", "roc_curve.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 1000
    report = (tmp_path / "rep" / "report.md").read_text()
    assert f"| AP | {results['ap']:.4f} |" in report and "pr_curve.png" in report
    assert cv2.imread(str(tmp_path / "rep" / "pr_curve.png")) is not None
    assert len(list((tmp_path / "rep" / "worst").glob("*.png"))) == 2
    assert "AP" in capsys.readouterr().out


def test_fixed_component_threshold_and_label_values(tmp_path):
    _write_scores(tmp_path, count=3)
    for path in (tmp_path / "labels").glob("*.png"):  # relabel: 7 inlier, 9 anomaly, 0 void
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(
            str(path), np.choose(np.searchsorted([0, 1, 255], raw), [7, 9, 0]).astype(np.uint8)
        )
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "evaluate",
                "--scores",
                str(tmp_path / "scores"),
                "--labels",
                str(tmp_path / "labels"),
                "--inlier-values",
                "7",
                "--anomaly-values",
                "9",
                "--ignore-values",
                "0",
                "--component-threshold",
                "0.5",
                "--track",
                "obstacle",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads(out.read_text())
    assert results["components"]["threshold"] == 0.5
    assert results["components"]["track"] == "obstacle"


def test_bad_arguments_exit_nonzero_with_a_message(tmp_path, capsys):
    assert main(["evaluate", "--scores", str(tmp_path)]) == 2
    assert "--labels" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "m.onnx"), "--dataset", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def _scene_dataset(root, count=3, shape=(48, 64)):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(3)
    for i in range(count):
        rgb = np.full((*shape, 3), 128, np.uint8)
        label = np.zeros(shape, np.uint8)
        y, x = rng.integers(4, shape[0] - 20), rng.integers(4, shape[1] - 20)
        rgb[y : y + 16, x : x + 16] = (255, 0, 255)  # the tiny model scores magenta high
        label[y : y + 16, x : x + 16] = 1
        label[y + 16 : y + 18, x : x + 16] = 255
        cv2.imwrite(str(root / "images" / f"s{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "labels" / f"s{i}.png"), label)


def test_model_on_dataset_equals_direct_pipeline_scores(tmp_path, tiny_model_path):
    from ood_perception.backends import create_backend
    from ood_perception.datasets import open_dataset
    from ood_perception.pipeline import Pipeline
    from ood_perception.postprocess import PostprocessConfig

    _scene_dataset(tmp_path / "data")
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tiny_model_path),
                "--dataset",
                str(tmp_path / "data"),
                "--json",
                str(out),
                "--report",
                str(tmp_path / "rep"),
            ]
        )
        == 0
    )
    results = json.loads(out.read_text())
    pipeline = Pipeline(create_backend("onnxruntime", str(tiny_model_path)), PostprocessConfig())
    s, y = [], []
    for _, rgb, label in open_dataset(tmp_path / "data"):
        score = pipeline.process([rgb])[0].anomaly_score
        s.append(score[label != 255])
        y.append(label[label != 255])
    s, y = np.concatenate(s), np.concatenate(y)
    assert results["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-6)
    assert results["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    assert results["ap"] > 0.9
    assert results["components"]["gt_components"] == 3
    assert (tmp_path / "rep" / "roc_curve.png").is_file()
    thumbs = sorted((tmp_path / "rep" / "worst").glob("*.png"))
    assert len(thumbs) == 3 and cv2.imread(str(thumbs[0])).shape[1] == 3 * 320
