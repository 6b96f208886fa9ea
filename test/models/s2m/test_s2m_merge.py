"""S2M's merge rule against the official code, and the detector-free box proposals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from s2m_reference import official_merge

from ood_perception.errors import ConfigurationError
from ood_perception.models.s2m.merge import merge_masks
from ood_perception.models.s2m.proposals import MIN_CONFIDENCE, ProposalConfig, box_proposals


def _random_masks(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, 40, 60), bool)
    for mask in masks:
        y, x = rng.integers(0, 30), rng.integers(0, 45)
        mask[y:y + rng.integers(5, 20), x:x + rng.integers(5, 25)] = True
    return masks


def test_merge_equals_the_official_rule():
    masks = _random_masks(12, seed=0)
    scores = np.sort(np.random.default_rng(1).uniform(0.05, 1.0, 12))[::-1].copy()
    expected = official_merge(masks, scores.tolist())
    got = merge_masks(torch.from_numpy(masks), torch.from_numpy(scores).float()).numpy()
    assert np.array_equal(got, expected.astype(np.float32))
    assert (got > 0).sum() == masks.any(0).sum()  # overlaps exist and all covered pixels count
    assert masks.sum(0).max() > 1


def test_merge_sorts_any_order_and_keeps_the_lowest_confidence_in_overlaps():
    masks = _random_masks(8, seed=2)
    scores = np.random.default_rng(3).uniform(0.05, 1.0, 8)
    order = np.argsort(-scores, kind="stable")
    expected = official_merge(masks[order], scores[order].tolist())
    got = merge_masks(torch.from_numpy(masks), torch.from_numpy(scores).float()).numpy()
    assert np.array_equal(got, expected.astype(np.float32))
    covered = masks.any(0)
    lowest = np.where(masks, scores[:, None, None], np.inf).min(0)
    assert np.allclose(got[covered], lowest[covered])
    assert got.min() == 0.0 and got.max() <= 1.0


def test_merge_without_masks_is_empty():
    got = merge_masks(torch.zeros((0, 5, 7), dtype=torch.bool), torch.zeros(0))
    assert got.shape == (5, 7) and not got.any()


def _boxes(*xywh):
    return np.array([[x, y, x + w, y + h] for x, y, w, h in xywh], float)


def test_fragments_of_one_object_merge_and_far_objects_stay_apart():
    boxes = _boxes((10, 10, 20, 10), (12, 24, 18, 8), (100, 50, 10, 10))  # first two 4 px apart
    areas = np.array([200, 144, 100])
    scores = np.array([3.0, 1.0, 2.0])
    cfg = ProposalConfig(margin=0.0, min_margin=3)
    prompts, confidence = box_proposals(boxes, areas, scores, (0.0, 4.0), (120, 160), cfg)
    assert prompts.dtype == np.float32 and len(prompts) == 2
    merged = ((3.0 * 200 + 1.0 * 144) / 344) / 4.0
    assert np.allclose(confidence, [merged, 0.5])
    assert np.allclose(prompts[0], [10 - 3, 10 - 3, 30 + 3, 32 + 3])  # union, grown
    assert np.allclose(prompts[1], [97, 47, 113, 63])
    separate, _ = box_proposals(boxes, areas, scores, (0.0, 4.0), (120, 160),
                                ProposalConfig(margin=0.0, min_margin=3, merge_fragments=False))
    assert len(separate) == 3


def test_margins_clip_to_the_frame_and_top_k_keeps_the_most_confident():
    boxes = _boxes((0, 0, 10, 10), (40, 40, 20, 20), (80, 0, 10, 10))
    cfg = ProposalConfig(margin=0.5, min_margin=0, max_boxes=2)
    prompts, confidence = box_proposals(boxes, [100, 400, 100], [1.0, 5.0, 9.0], (0.0, 4.0),
                                        (64, 96), cfg)
    assert np.allclose(confidence, [1.0, 1.0])  # clipped to 1, then the larger area first
    assert np.allclose(prompts[0], [30, 30, 70, 64])
    assert np.allclose(prompts[1], [75, 0, 95, 15])
    low, conf = box_proposals(boxes[:1], [100], [-3.0], (0.0, 4.0), (64, 96), cfg)
    assert conf[0] == pytest.approx(MIN_CONFIDENCE)  # never 0: stays apart from background


def test_no_components_no_prompts():
    prompts, confidence = box_proposals(np.zeros((0, 4)), [], [], (0.0, 1.0), (10, 10),
                                        ProposalConfig())
    assert prompts.shape == (0, 4) and confidence.shape == (0,)


@pytest.mark.parametrize("fields", [{"margin": -0.1}, {"min_margin": -1}, {"max_boxes": 0},
                                    {"max_boxes": 2.5}])
def test_bad_proposal_settings_are_refused(fields):
    with pytest.raises(ConfigurationError):
        ProposalConfig(**fields)
