"""The committed demo model reaches its card's figures on a regenerated held-out set.

The card's figures live in `ood_perception/assets/uem_demo.json` (written by `train-uem
--metrics-json`, quoted in docs/demo_model.md); here the same held-out scenes are rendered
again and scored through the registry builder, i.e. the weights exactly as they ship.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from ood_perception.cli import make_scenes
from ood_perception.models.registry import ExportRequest, build_model
from ood_perception.models.uem.demo import DEMO_CAMERA, DEMO_CHECKPOINT, DEMO_SCORE_RANGE
from ood_perception.synthetic.scenes import SceneConfig
from ood_perception.training import data as training_data
from ood_perception.training import validation as training_eval

CARD = DEMO_CHECKPOINT.with_suffix(".json")


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(CARD.read_text())


@pytest.fixture(scope="module")
def evaluation(card):
    deploy = build_model(ExportRequest(model="uem-demo", input_size=DEMO_CAMERA))
    frames = training_data.validation_frames(card["frames"], DEMO_CAMERA)
    return training_eval.evaluate(training_eval.deploy_predictor(deploy), frames)


def test_the_embedded_checkpoint_is_committed_and_small() -> None:
    assert DEMO_CHECKPOINT.is_file() and CARD.is_file()
    assert DEMO_CHECKPOINT.stat().st_size < 20e6


def test_the_demo_camera_is_the_synthetic_camera() -> None:
    """Three places name the synthetic frame size; models/ must not import the scene code."""
    parser = argparse.ArgumentParser()
    make_scenes.add_arguments(parser)
    assert DEMO_CAMERA == (SceneConfig().height, SceneConfig().width)
    assert parser.parse_args(["--output", "x"]).size == DEMO_CAMERA
    assert tuple(json.loads(CARD.read_text())["camera"]) == DEMO_CAMERA


def test_held_out_anomalies_reach_the_card(card, evaluation) -> None:
    assert evaluation.ap == pytest.approx(card["ap"], abs=0.01)
    assert evaluation.fpr95 == pytest.approx(card["fpr95"], abs=0.01)
    assert evaluation.auroc == pytest.approx(card["auroc"], abs=0.01)


def test_segmentation_reaches_the_card(card, evaluation) -> None:
    assert evaluation.miou == pytest.approx(card["miou"], abs=0.01)
    assert evaluation.class_iou[0] > 0.9  # road


def test_the_score_range_midpoint_is_a_working_threshold(evaluation) -> None:
    deploy = build_model(ExportRequest(model="uem-demo", input_size=DEMO_CAMERA))
    assert deploy.info.score_range == DEMO_SCORE_RANGE
    frames = training_data.validation_frames(
        8, DEMO_CAMERA, seed=training_data.VALIDATION_SEED + 1000)
    scores, _ = training_eval.deploy_predictor(deploy)(np.stack([f.rgb for f in frames]))
    threshold = sum(DEMO_SCORE_RANGE) / 2
    labels = np.stack([f.anomaly for f in frames])
    called = scores > threshold
    hits, false = (called & (labels == 1)).sum(), (called & (labels == 0)).sum()
    positives = (labels == 1).sum()
    assert hits / positives > 0.45
    assert hits / (hits + false) > 0.7
