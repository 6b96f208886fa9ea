"""The S2M box detector against a transcription of detectron2's inference path, and its
detectron2 checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from detectron2_files import save_pkl, save_pth
from s2m_reference import detect, nms, roi_align
from s2m_tiny import TINY_DETECTOR, detectron2_state, random_detector, score_map

from ood_perception.errors import CheckpointError
from ood_perception.models.s2m.checkpoints import load_detector_checkpoint
from ood_perception.models.s2m.detector import DetectorConfig, ScoreBoxDetector
from ood_perception.models.s2m.nms import batched_nms
from ood_perception.models.s2m.nms import nms as our_nms
from ood_perception.models.s2m.roi_align import roi_align as our_roi_align


@pytest.fixture(scope="module")
def detector() -> ScoreBoxDetector:
    return random_detector(seed=0)


def test_detections_match_detectron2(detector):
    """Two score maps of different sizes in one batch (padding to 32), every stage on."""
    scores = [score_map(100, 140, seed=1), score_map(90, 150, seed=2)]
    with torch.no_grad():
        ours = detector(scores)
        expected = detect(scores, detector.state_dict(), TINY_DETECTOR)
    for got, (boxes, confidence, classes) in zip(ours, expected, strict=True):
        assert len(boxes) > 10  # enough detections to exercise NMS and both classes
        assert set(classes.tolist()) == {0, 1}
        assert torch.equal(got.classes, classes)
        assert torch.allclose(got.boxes, boxes, atol=1e-3)
        assert torch.allclose(got.scores, confidence, atol=1e-6)
        assert (got.scores[:-1] >= got.scores[1:]).all()
        assert (got.boxes[:, :2] >= 0).all() and (got.boxes[:, 2] <= scores[0].shape[1] + 10).all()


def test_roi_align_matches_torchvision_semantics():
    """Boxes inside, across the border, degenerate and large (several samples per bin)."""
    generator = torch.Generator().manual_seed(0)
    feature = torch.randn(4, 12, 16, generator=generator)
    boxes = torch.tensor([[3.0, 2.0, 40.0, 30.0], [-5.0, -3.0, 10.0, 70.0],
                          [20.0, 20.0, 20.0, 35.0], [0.0, 0.0, 64.0, 48.0],
                          [50.0, 40.0, 80.0, 60.0]])
    got = our_roi_align(feature, boxes, 7, 0.25)
    for box, pooled in zip(boxes, got, strict=True):
        assert torch.allclose(pooled, roi_align(feature, box, 0.25), atol=1e-5)
    assert got[2].abs().max() == 0  # zero width: no samples


def test_nms_keeps_what_torchvisions_greedy_loop_keeps():
    generator = torch.Generator().manual_seed(1)
    corners = torch.rand(200, 2, generator=generator) * 100
    boxes = torch.cat([corners, corners + 5 + torch.rand(200, 2, generator=generator) * 30], 1)
    scores = torch.rand(200, generator=generator)
    assert torch.equal(our_nms(boxes, scores, 0.5), nms(boxes, scores, 0.5))
    groups = (torch.arange(200) % 3)
    kept = batched_nms(boxes, scores, groups, 0.5)
    assert (scores[kept][:-1] >= scores[kept][1:]).all()
    assert len(kept) > len(our_nms(boxes, scores, 0.5))  # groups never suppress each other


def test_a_flat_score_map_gives_no_detections():
    detector = random_detector(seed=3)
    with torch.no_grad():
        # No foreground class above the 0.05 threshold: the background takes it all.
        detector.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([-20.0, -20.0, 20.0]))
        (result,) = detector([torch.full((64, 64), -5.0)])
    assert result.boxes.shape == (0, 4) and result.scores.shape == (0,)


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_detectron2_checkpoints_load_strictly(tmp_path: Path, detector, suffix: str):
    state = detectron2_state(detector)
    state["pixel_mean"] = torch.tensor([103.53, 116.28, 123.675]).view(3, 1, 1)  # older files
    path = (save_pth(state, tmp_path / "model_final.pth") if suffix == ".pth"
            else save_pkl(state, tmp_path / "model_final.pkl"))
    loaded = load_detector_checkpoint(ScoreBoxDetector(TINY_DETECTOR), path)
    for key, value in detector.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_checkpoint_errors_name_the_keys(tmp_path: Path, detector):
    state = detectron2_state(detector)
    del state["roi_heads.box_predictor.bbox_pred.bias"]
    with pytest.raises(CheckpointError, match="bbox_pred.bias"):
        load_detector_checkpoint(ScoreBoxDetector(TINY_DETECTOR),
                                 save_pth(state, tmp_path / "missing.pth"))
    state = detectron2_state(detector) | {"pixel_std": torch.tensor([57.0, 57.0, 58.0])}
    with pytest.raises(CheckpointError, match="pixel_std"):
        load_detector_checkpoint(ScoreBoxDetector(TINY_DETECTOR),
                                 save_pth(state, tmp_path / "std.pth"))


def test_official_r50_fpn_layout():
    """detectron2's Faster R-CNN R50-FPN: 265 backbone, 16 FPN, 6 RPN and 8 box-head keys."""
    keys = ScoreBoxDetector(DetectorConfig()).state_dict()
    assert len(keys) == 295
    assert tuple(keys["roi_heads.box_head.fc1.weight"].shape) == (1024, 256 * 7 * 7)
    assert tuple(keys["roi_heads.box_predictor.cls_score.weight"].shape) == (3, 1024)
    assert tuple(keys["roi_heads.box_predictor.bbox_pred.weight"].shape) == (8, 1024)
    assert tuple(keys["proposal_generator.rpn_head.anchor_deltas.weight"].shape) == (
        12, 256, 1, 1)
    assert "backbone.bottom_up.res5.2.conv3.norm.running_var" in keys
