"""Scores on hand-made logits."""

from __future__ import annotations

import math

import pytest
import torch

from ood_perception.errors import ConfigurationError
from ood_perception.models.uem.scores import SCORES, ScoreHead

# One pixel, three classes: F = [2, 0, -1]; U = [0.5, 3].
SEG = torch.tensor([2.0, 0.0, -1.0]).view(1, 3, 1, 1)
UEM = torch.tensor([0.5, 3.0]).view(1, 2, 1, 1)


def test_llr_is_u1_minus_u0_minus_max_f() -> None:
    assert SCORES["llr"](SEG, UEM).item() == pytest.approx(3.0 - 0.5 - 2.0)


def test_baselines() -> None:
    lse = math.log(math.exp(2) + 1 + math.exp(-1))
    assert SCORES["max_logit"](SEG, UEM).item() == pytest.approx(-2.0)
    assert SCORES["energy"](SEG, UEM).item() == pytest.approx(-lse)
    assert SCORES["max_softmax"](SEG, UEM).item() == pytest.approx(-math.exp(2 - lse))
    assert SCORES["uem_out"](SEG, UEM).item() == pytest.approx(3.0)


def test_llr_orders_pixels() -> None:
    seg = torch.tensor([[5.0, 0.0], [0.1, 0.0]]).T.reshape(1, 2, 1, 2)
    uem = torch.tensor([[2.0, 0.0], [0.0, 2.0]]).T.reshape(1, 2, 1, 2)
    score, classes = ScoreHead("llr")(seg, uem)
    assert score[0, 0, 1] > score[0, 0, 0]
    assert classes.tolist() == [[[0, 0]]]


def test_unknown_score() -> None:
    with pytest.raises(ConfigurationError, match="llr"):
        ScoreHead("entropy")
