"""`ood-perception evaluate` on tiny generated data: JSON equals a direct sklearn computation."""

import json
import re

import cv2
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ood_perception.cli.main import main


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
    assert "speed" not in results  # saved maps: no model ran
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


def test_model_on_dataset_equals_direct_pipeline_scores(tmp_path, tiny_model_path, capsys):
    from ood_perception.backends import create_backend
    from ood_perception.core.pipeline import Pipeline
    from ood_perception.core.postprocess import PostprocessConfig
    from ood_perception.evaluation.datasets import open_dataset

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
    speed = results["speed"]
    assert speed["backend"] == "onnxruntime" and speed["frames_per_second"] > 0
    assert speed["ms_per_frame"] == pytest.approx(1000 / speed["frames_per_second"])
    assert "frames/s" in capsys.readouterr().out
    assert (tmp_path / "rep" / "roc_curve.png").is_file()
    thumbs = sorted((tmp_path / "rep" / "worst").glob("*.png"))
    assert len(thumbs) == 3 and cv2.imread(str(thumbs[0])).shape[1] == 3 * 320


def test_second_pass_reads_each_frames_own_map(tmp_path, tiny_model_path, monkeypatch):
    """Pass two keys its cache by frame index: two frames with one name never swap maps."""
    from ood_perception.cli import evaluate
    from ood_perception.evaluation import datasets

    data = tmp_path / "data"
    _scene_dataset(data, count=2)
    items = tuple(
        ("s", data / "images" / f"s{i}.png", data / "labels" / f"s{i}.png")
        for i in (0, 1)
    )
    same_name = datasets.Dataset("folder", data, items, datasets.LabelSpec(), "anomaly")
    monkeypatch.setattr(evaluate, "open_dataset", lambda *args: same_name)
    model = ["evaluate", "--model", str(tiny_model_path), "--dataset", str(data)]
    model += ["--track", "obstacle", "--json"]  # obstacle sizes keep the 16x16 squares
    assert main([*model, str(tmp_path / "two.json")]) == 0
    two_pass = json.loads((tmp_path / "two.json").read_text())["components"]
    assert two_pass["pred_components"] == 2 and two_pass["f1_mean"] > 0
    fixed = ["--component-threshold", str(two_pass["threshold"])]
    assert main([*model, str(tmp_path / "one.json"), *fixed]) == 0
    assert json.loads((tmp_path / "one.json").read_text())["components"] == two_pass


def _strict_json(path):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_set_without_anomaly_pixels_reports_undefined_metrics(tmp_path, capsys):
    _write_scores(tmp_path, count=2)
    for path in (tmp_path / "labels").glob("*.png"):
        cv2.imwrite(str(path), np.zeros((40, 56), np.uint8))
    out = tmp_path / "r.json"
    args = ["evaluate", "--scores", str(tmp_path / "scores"), "--labels", str(tmp_path / "labels")]
    assert main([*args, "--json", str(out), "--report", str(tmp_path / "rep")]) == 0
    results = _strict_json(out)
    for key in ("ap", "auroc", "fpr95", "auiou", "mean_f1"):
        assert results[key] is None, key
    assert results["components"]["threshold"] is None
    printed = capsys.readouterr().out
    assert "FPR95 n/a  AuIoU n/a  mean F1 n/a" in printed and "components at n/a" in printed
    assert "| FPR at 95% TPR | n/a |" in (tmp_path / "rep" / "report.md").read_text()


def test_write_json_nulls_every_non_finite_number(tmp_path):
    from ood_perception.evaluation.report import write_json

    results = {"a": float("inf"), "b": {"c": [float("-inf"), 1.5, float("nan")]}}
    write_json(results, tmp_path / "r.json")
    assert _strict_json(tmp_path / "r.json") == {"a": None, "b": {"c": [None, 1.5, None]}}


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--component-threshold", "nan"], "--component-threshold must be a finite number"),
        (["--sweep-range", "1", "0"], "--sweep-range needs finite LO < HI"),
        (["--sweep-range", "0.5", "0.5"], "--sweep-range needs finite LO < HI"),
        (["--sweep-range", "0", "inf"], "--sweep-range needs finite LO < HI"),
        (["--save-scores", "{tmp}/kept"], "--save-scores keeps a model's score maps"),
        (["--json", "{tmp}/afile/x.json"], "--json .*afile is not a writable folder"),
        (["--json", "{tmp}"], "--json .* exists and is not a file"),
        (["--report", "{tmp}/afile"], "--report .*afile exists and is not a folder"),
        (["--anomaly-values", "1,255"], r"\[255\] are listed as both anomaly and ignore"),
    ],
)
def test_bad_flags_stop_before_evaluating(tmp_path, capsys, extra, message):
    _write_scores(tmp_path, count=2)
    (tmp_path / "afile").write_text("")
    args = ["evaluate", "--scores", str(tmp_path / "scores"), "--labels", str(tmp_path / "labels")]
    assert main([*args, *(a.format(tmp=tmp_path) for a in extra)]) == 2
    captured = capsys.readouterr()
    assert re.search(message, captured.err) and captured.err.count("\n") == 1
    assert captured.out == "" and not (tmp_path / "kept").exists()


def test_write_errors_end_with_one_line(tmp_path, capsys, monkeypatch):
    from ood_perception.evaluation import report

    def full_disk(results, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_json", full_disk)
    _write_scores(tmp_path, count=2)
    args = ["evaluate", "--scores", str(tmp_path / "scores"), "--labels", str(tmp_path / "labels")]
    assert main([*args, "--json", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err  # progress bars, then the one line
    last = err.splitlines()[-1]
    assert "Traceback" not in err
    assert re.fullmatch(r"ood-perception evaluate: cannot write \S*r\.json: .*space.*", last)


def test_worst_frames_of_shards_merge_to_what_one_keeper_holds():
    from ood_perception.evaluation.report import WorstFrames

    aps = [0.5, 0.2, 0.2, 0.9, 0.2, 0.1, 0.2, 0.5]  # ties across shard borders
    score, label = np.zeros((4, 6), np.float32), np.zeros((4, 6), np.uint8)
    whole, merged = WorstFrames(3), WorstFrames(3)
    for index, ap in enumerate(aps):
        whole.offer(f"f{index}", ap, None, score, label)
    for start in (0, 3, 6):
        shard = WorstFrames(3, start=start)
        for index in range(start, min(start + 3, len(aps))):
            shard.offer(f"f{index}", aps[index], None, score, label)
        merged.merge_from(shard)
    assert [(n, ap) for n, ap, _ in merged.frames()] == [(n, ap) for n, ap, _ in whole.frames()]
    assert [n for n, _, _ in whole.frames()] == ["f5", "f6", "f4"]
