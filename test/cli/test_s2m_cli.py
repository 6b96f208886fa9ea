"""`run --refine s2m` and `evaluate --refine s2m` on the tiny contract model and tiny SAM."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ood_perception.cli.main import main
from ood_perception.core.postprocess import PostprocessConfig, postprocess
from ood_perception.evaluation.s2m_metrics import S2MMetrics


def _frames(folder, count=2):
    folder.mkdir(parents=True)
    labels = []
    for i in range(count):
        rgb = np.full((64, 96, 3), 128, np.uint8)
        label = np.zeros((64, 96), np.uint8)
        x, y = 10 + 30 * i, 12 + 8 * i
        rgb[y:y + 18, x:x + 24] = (255, 0, 255)
        label[y:y + 18, x:x + 24] = 1
        cv2.imwrite(str(folder / f"f{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        labels.append(label)
    return labels


def test_run_writes_refined_masks(tmp_path, tiny_model_path, tiny_sam, capsys):
    _frames(tmp_path / "frames")
    rc = main(["run", str(tmp_path / "frames"), "--model", str(tiny_model_path), "--output",
               str(tmp_path / "out"), "--refine", "s2m", "--sam", str(tiny_sam.encoder),
               "--min-area", "4", "--batch", "2"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "sam_encoder" in out and "sam_decoder" in out
    for i in range(2):
        s2m = np.load(tmp_path / "out" / f"f{i}_s2m.npy")
        mask = cv2.imread(str(tmp_path / "out" / f"f{i}_mask.png"), cv2.IMREAD_GRAYSCALE)
        assert s2m.shape == mask.shape == (64, 96) and 0.0 <= s2m.min() <= s2m.max() <= 1.0
        assert s2m.max() > 0
        expected = postprocess(s2m, None, PostprocessConfig(score_threshold=0.0,
                                                            min_obstacle_area=4)).mask
        assert np.array_equal(mask, expected)
        score = np.load(tmp_path / "out" / f"f{i}_score.npy")
        assert not np.array_equal(mask > 0, score > 0.5)  # SAM's masks, not the threshold


@pytest.mark.parametrize(("flags", "message"), [
    (["--refine", "s2m"], "needs --sam"),
    (["--sam", "x.onnx"], "need --refine s2m"),
    (["--refine", "s2m", "--sam", "missing.onnx"], "--sam file not found"),
    (["--refine", "s2m", "--sam", "{sam}", "--max-boxes", "0"], "max_boxes"),
])
def test_run_refuses_incomplete_refine_flags(tmp_path, tiny_model_path, tiny_sam, capsys,
                                             flags, message):
    _frames(tmp_path / "frames", count=1)
    flags = [f.replace("{sam}", str(tiny_sam.encoder)) for f in flags]
    rc = main(["run", str(tmp_path / "frames"), "--model", str(tiny_model_path), "--output",
               str(tmp_path / "out"), *flags])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_evaluate_reports_raw_and_refined_side_by_side(tmp_path, tiny_model_path, tiny_sam,
                                                       capsys):
    labels = _frames(tmp_path / "data" / "images", count=3)
    (tmp_path / "data" / "labels").mkdir()
    for i, label in enumerate(labels):
        cv2.imwrite(str(tmp_path / "data" / "labels" / f"f{i}.png"), label)
    out = tmp_path / "r.json"
    rc = main(["evaluate", "--model", str(tiny_model_path), "--dataset", str(tmp_path / "data"),
               "--refine", "s2m", "--sam", str(tiny_sam.encoder), "--save-scores",
               str(tmp_path / "scores"), "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "refined by S2M" in text and "AuIoU" in text and "sIoU" in text
    results = json.loads(out.read_text())
    refined = results["refined"]
    assert {"ap", "auroc", "fpr95", "s2m", "components"} <= set(refined)
    assert refined["components"]["threshold"] == 0.0
    assert refined["s2m"]["frames"] == results["s2m"]["frames"] == 3
    # The raw score's S2M metrics equal a direct computation on the saved maps.
    direct = S2MMetrics()
    for i, label in enumerate(labels):
        direct.update(np.load(tmp_path / "scores" / f"f{i}.npy"), label)
    assert results["s2m"]["auiou"] == pytest.approx(direct.summary()["auiou"])
    assert results["s2m"]["best_iou"] == pytest.approx(direct.summary()["best_iou"])
