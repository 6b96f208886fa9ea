"""The committed DOoD demo model is small, loads as shipped and reaches its card's figures.

The card (`ood_perception/assets/dood_demo_diff.json`, written by `train-dood
--metrics-json`, quoted in docs/dood.md) holds the held-out figures over 40 scenes; scoring
all of them takes minutes on CPU, so the fast test scores the first scene and a slow one the
first 10 against the card.
"""

from __future__ import annotations

import json

import pytest

from ood_perception.models.dood.compound import read_statistics
from ood_perception.models.dood.demo import (
    DOOD_DEMO_CHECKPOINT,
    DOOD_DEMO_SCORE_RANGE,
    DOOD_DEMO_STATS,
)
from ood_perception.models.registry import ExportRequest, build_model
from ood_perception.models.uem.demo import DEMO_CAMERA
from ood_perception.training import data as training_data
from ood_perception.training import validation as training_eval

CARD = DOOD_DEMO_CHECKPOINT.with_suffix(".json")
FRAMES = 10
# AP of the compound score on the first held-out scene alone (25 steps, CPU fp32).
FIRST_SCENE_AP = 0.894


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(CARD.read_text())


@pytest.fixture(scope="module")
def frames():
    return training_data.validation_frames(FRAMES, DEMO_CAMERA)


@pytest.fixture(scope="module")
def deploy():
    return build_model(ExportRequest(model="dood-demo", input_size=DEMO_CAMERA))


def test_the_embedded_files_are_committed_and_small(card) -> None:
    assert DOOD_DEMO_CHECKPOINT.stat().st_size < 6e6
    stats = read_statistics(DOOD_DEMO_STATS)
    assert (stats.timesteps, stats.weighting, stats.images) == (25, "official", 25)
    assert card["stats_diffusion_std"] == stats.diffusion_std


def test_the_shipped_graph_separates_the_first_held_out_scene(deploy, frames) -> None:
    assert deploy.info.score_name == "compound"
    assert deploy.info.score_range == DOOD_DEMO_SCORE_RANGE
    evaluation = training_eval.evaluate(training_eval.deploy_predictor(deploy), frames[:1])
    assert evaluation.ap == pytest.approx(FIRST_SCENE_AP, abs=0.01)
    assert evaluation.auroc > 0.98


def test_other_scores_of_the_demo_carry_no_compound_range() -> None:
    deploy = build_model(ExportRequest(model="dood-demo", input_size=DEMO_CAMERA,
                                       score="diffusion"))
    assert deploy.info.score_name == "diffusion"
    assert deploy.info.score_range is None


@pytest.mark.slow
def test_held_out_anomalies_reach_the_card_on_its_first_scenes(card, deploy, frames) -> None:
    evaluation = training_eval.evaluate(training_eval.deploy_predictor(deploy), frames)
    assert evaluation.ap == pytest.approx(card["ap_first_10"], abs=0.01)
    assert evaluation.miou == pytest.approx(card["miou_first_10"], abs=0.01)
