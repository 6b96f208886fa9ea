"""Mask-classification scores on hand-made probabilities with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from ood_perception.errors import ConfigurationError
from ood_perception.models.mask2former.scores import (
    check_score,
    eam,
    max_softmax,
    rba,
    semantic_map,
    uno,
)

# K = 2 known classes; outputs: known 0, known 1, negative, no-object.
PROBS = torch.tensor([[[0.1, 0.2, 0.6, 0.1],
                       [0.7, 0.1, 0.1, 0.1]]])
# Three pixels: only query 0, only query 1, both at 0.5.
MASKS = torch.tensor([[[[1.0, 0.0, 0.5]],
                       [[0.0, 1.0, 0.5]]]])


def close(actual: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(actual.flatten(), torch.tensor(expected), atol=1e-6, rtol=0)


def test_uno_is_negative_minus_best_known() -> None:
    # query 0: 0.6 - 0.2 = 0.4; query 1: 0.1 - 0.7 = -0.6
    close(uno(PROBS, MASKS, 2), [0.4, -0.6, -0.1])


def test_eam_max_includes_the_negative_class_on_k_plus_2() -> None:
    # max over all but no-object: query 0 -> 0.6 (the negative class), query 1 -> 0.7
    close(eam(PROBS, MASKS, 2), [1 - 0.6, 1 - 0.7, 1 - 0.65])


def test_eam_on_a_closed_set_head() -> None:
    probs = torch.tensor([[[0.5, 0.3, 0.2], [0.1, 0.8, 0.1]]])  # K = 2, no-object last
    close(eam(probs, MASKS, 2), [0.5, 0.2, 1 - 0.65])


def test_semantic_map_drops_negative_and_no_object() -> None:
    sem = semantic_map(PROBS, MASKS, 2)
    assert sem.shape == (1, 2, 1, 3)
    close(sem[0, :, 0].T, [0.1, 0.2, 0.7, 0.1, 0.4, 0.15])
    assert sem.argmax(1).flatten().tolist() == [1, 0, 0]


def test_max_softmax_and_rba() -> None:
    close(max_softmax(PROBS, MASKS, 2), [-0.2, -0.7, -0.4])
    t = math.tanh
    close(rba(PROBS, MASKS, 2), [-(t(0.1) + t(0.2)), -(t(0.7) + t(0.1)),
                                 -(t(0.4) + t(0.15))])


def test_check_score() -> None:
    check_score("uno", 21, 19)
    check_score("eam", 20, 19)
    with pytest.raises(ConfigurationError, match="K\\+2"):
        check_score("uno", 20, 19)
    with pytest.raises(ConfigurationError, match="unknown Mask2Former score"):
        check_score("llr", 21, 19)
