"""calibrate -> params YAML -> the node's PostprocessConfig, threshold reached on the data."""

import dataclasses
import json

import cv2
import numpy as np
import pytest
import yaml

from ood_perception.cli.main import main
from ood_perception.core.postprocess import postprocess
from ood_perception.errors import ConfigurationError
from ood_perception.ros.params_file import postprocess_from_params, read_params


def _data(tmp_path, count=4, shape=(30, 40)):
    rng = np.random.default_rng(11)
    (tmp_path / "scores").mkdir()
    (tmp_path / "labels").mkdir()
    maps = []
    for i in range(count):
        label = (rng.random(shape) < 0.15).astype(np.uint8)
        label[:2] = 255
        score = (rng.random(shape) + 0.8 * label).astype(np.float32)
        np.save(tmp_path / "scores" / f"{i}.npy", score)
        cv2.imwrite(str(tmp_path / "labels" / f"{i}.png"), label)
        maps.append((score, label))
    return maps


def _pixels(maps, config=None):
    """Labelled pixels: scores, labels and, given a config, the node's mask on them.

    Blob filtering is switched off: calibration works on pixels, before blob removal.
    """
    scores = np.concatenate([s[lab != 255] for s, lab in maps])
    labels = np.concatenate([lab[lab != 255] for _, lab in maps])
    if config is None:
        return scores, labels
    config = dataclasses.replace(config, min_obstacle_area=0)
    masks = [postprocess(s, None, config).mask for s, _ in maps]
    called = np.concatenate([m[lab != 255] > 0 for m, (_, lab) in zip(masks, maps, strict=True)])
    return scores, labels, called


def _masks(scores, threshold):
    """`score > threshold` on float32 scores, for thresholds other than the calibrated one."""
    return scores > np.float32(threshold)


def test_target_tpr_round_trip(tmp_path):
    maps = _data(tmp_path)
    base = tmp_path / "base.yaml"
    base.write_text(
        yaml.safe_dump(
            {
                "ood_perception_node": {
                    "ros__parameters": {
                        "image_topics": ["/cam/image_raw"],
                        "score_threshold": 0.5,
                        "min_obstacle_area": 3,
                    }
                }
            }
        )
    )
    out = tmp_path / "node_params.yaml"
    assert (
        main(
            [
                "calibrate",
                "--scores",
                str(tmp_path / "scores"),
                "--labels",
                str(tmp_path / "labels"),
                "--target-tpr",
                "0.9",
                "--params-out",
                str(out),
                "--params-in",
                str(base),
            ]
        )
        == 0
    )
    text = out.read_text()
    assert text.startswith("# calibrated by")
    assert list(yaml.safe_load(text)) == ["/**"]  # applies under any namespace and node name
    params = read_params(out)
    assert params["image_topics"] == ["/cam/image_raw"] and params["min_obstacle_area"] == 3
    assert "model_path" not in params
    config = postprocess_from_params(out)
    assert config.score_threshold == params["score_threshold"] != 0.5
    assert config.min_obstacle_area == 3
    scores, labels, called = _pixels(maps, config)  # the node's own postprocess
    tpr = called[labels == 1].mean()
    assert tpr >= 0.9
    # the next distinct score up no longer reaches the target: the threshold is the tightest
    above = np.min(scores[scores > np.float32(config.score_threshold)])
    assert _masks(scores, above)[labels == 1].mean() < 0.9
    record = json.loads(out.with_suffix(".calibration.json").read_text())
    assert record["at_threshold"]["tpr"] == pytest.approx(tpr)
    assert record["score_threshold"] == config.score_threshold


def test_target_fpr(tmp_path):
    maps = _data(tmp_path)
    out = tmp_path / "p.yaml"
    assert (
        main(
            [
                "calibrate",
                "--scores",
                str(tmp_path / "scores"),
                "--labels",
                str(tmp_path / "labels"),
                "--target-fpr",
                "0.01",
                "--params-out",
                str(out),
            ]
        )
        == 0
    )
    threshold = read_params(out)["score_threshold"]
    scores, labels, called = _pixels(maps, postprocess_from_params(out))
    fpr = called[labels == 0].mean()
    assert fpr <= 0.01
    below = np.max(scores[~_masks(scores, threshold)])
    assert (scores >= below)[labels == 0].mean() > 0.01


def test_override_and_errors(tmp_path, capsys):
    _data(tmp_path)
    assert postprocess_from_params(None, 0.25).score_threshold == 0.25
    code = main(
        [
            "calibrate",
            "--scores",
            str(tmp_path / "scores"),
            "--labels",
            str(tmp_path / "labels"),
            "--target-tpr",
            "1.5",
            "--params-out",
            str(tmp_path / "x.yaml"),
        ]
    )
    assert code == 2 and "[0, 1]" in capsys.readouterr().err
    code = main(
        [
            "calibrate",
            "--scores",
            str(tmp_path / "scores"),
            "--labels",
            str(tmp_path / "labels"),
            "--params-in",
            str(tmp_path / "none.yaml"),
            "--params-out",
            str(tmp_path / "x.yaml"),
        ]
    )
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_model_path_written(tmp_path, tiny_model_path):
    from test_evaluate import _scene_dataset

    _scene_dataset(tmp_path / "data")
    out = tmp_path / "p.yaml"
    assert (
        main(
            [
                "calibrate",
                "--model",
                str(tiny_model_path),
                "--dataset",
                str(tmp_path / "data"),
                "--params-out",
                str(out),
            ]
        )
        == 0
    )
    params = read_params(out)
    assert params["model_path"] == str(tiny_model_path.resolve())
    assert isinstance(params["score_threshold"], float)


@pytest.mark.parametrize(("text", "message"), [
    ("a: [1,\n", "not valid YAML"),
    ("1: {ros__parameters: {}}\n", "node names at the top"),
    ("/**: {ros__parameters: [1, 2]}\n", "ros__parameters mapping"),
    ("front_detector: {ros__parameters: {score_threshold: 0.3}}\n", "no section for"),
])
def test_unusable_params_files_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        read_params(path)


def test_params_sections_merge_in_file_order_as_rclpy_does(tmp_path):
    """rclpy applies every matching section, later ones overriding (checked against a node)."""
    path = tmp_path / "p.yaml"
    path.write_text("ood_perception_node: {ros__parameters: {min_obstacle_area: 9}}\n"
                    "/**: {ros__parameters: {min_obstacle_area: 7, score_threshold: 0.25}}\n"
                    "/**/ood_perception_node: {ros__parameters: {gating_dilation: 3}}\n"
                    "other_node: {ros__parameters: {min_obstacle_area: 1}}\n")
    assert read_params(path) == {"min_obstacle_area": 7, "score_threshold": 0.25,
                                 "gating_dilation": 3}
    path.write_text("/front/ood_perception_node: {ros__parameters: {min_obstacle_area: 9}}\n"
                    "/rear/ood_perception_node: {ros__parameters: {min_obstacle_area: 7}}\n")
    with pytest.raises(ConfigurationError, match="several namespaces"):
        read_params(path)


def test_params_file_sections_for_any_namespace(tmp_path):
    path = tmp_path / "p.yaml"
    for key in ("/**", "ood_perception_node", "/front/ood_perception_node"):
        path.write_text(yaml.safe_dump({key: {"ros__parameters": {"min_obstacle_area": 7}}}))
        assert read_params(path) == {"min_obstacle_area": 7}


def test_params_out_folder_is_refused_before_the_run(tmp_path, capsys):
    _data(tmp_path)
    code = main(["calibrate", "--scores", str(tmp_path / "scores"), "--labels",
                 str(tmp_path / "labels"), "--params-out", str(tmp_path)])
    assert code == 2 and "exists and is not a file" in capsys.readouterr().err
