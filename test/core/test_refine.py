"""S2M refinement in the ROS-free pipeline: tiny contract model + the exported tiny SAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from s2m_tiny import random_detector

from ood_perception.backends.onnxruntime import OnnxRuntimeBackend
from ood_perception.backends.sam import create_sam_runner
from ood_perception.core.pipeline import STAGES, Outputs, Pipeline
from ood_perception.core.postprocess import PostprocessConfig, postprocess
from ood_perception.core.refine import REFINE_STAGES, RefineConfig, Refiner, open_refiner
from ood_perception.errors import ConfigurationError
from ood_perception.models.s2m.merge import merge_masks
from ood_perception.models.sam.deploy import (
    SamImageEncoderDeploy,
    SamPromptDecoderDeploy,
    postprocess_masks,
)
from ood_perception.models.sam.sam import boxes_to_sam

CONFIG = PostprocessConfig(score_threshold=0.5, min_obstacle_area=4)


def scene(height: int, width: int, *boxes: tuple[int, int, int, int]) -> np.ndarray:
    frame = np.full((height, width, 3), 128, np.uint8)
    for x, y, w, h in boxes:
        frame[y:y + h, x:x + w] = (255, 0, 255)
    return frame


@pytest.fixture
def backend(tiny_model_path: Path):
    backend = OnnxRuntimeBackend(tiny_model_path)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def sam_runner(tiny_sam):
    runner = create_sam_runner("onnxruntime", tiny_sam.encoder)
    yield runner
    runner.close()


def test_obstacles_come_from_sam_masks_merged_by_confidence(backend, sam_runner, tiny_sam):
    frame = scene(64, 96, (10, 8, 20, 16), (60, 30, 14, 12))
    refiner = Refiner(sam_runner, RefineConfig(mode="s2m"), score_range=(0.0, 1.0))
    plain = Pipeline(backend, CONFIG).process([frame])[0]
    [result] = Pipeline(backend, CONFIG, refiner=refiner).process([frame])
    assert set(result.timings) == set(STAGES) | set(REFINE_STAGES)
    assert np.array_equal(result.anomaly_score, plain.anomaly_score)
    # The prompts: one box per magenta square, grown by the margin.
    [refined] = refiner.refine([frame], frame[None], [plain.anomaly_score], [plain.semantic],
                               [postprocess(plain.anomaly_score, plain.semantic, CONFIG)],
                               CONFIG)
    assert len(refined.boxes) == 2 and (refined.confidences > 0.5).all()
    # The same map from SAM's torch modules, independently of the runner and the stage.
    sam = tiny_sam.model
    with torch.no_grad():
        embedding = SamImageEncoderDeploy(sam, (64, 96))(torch.from_numpy(frame[None]))
        boxes = boxes_to_sam(torch.from_numpy(refined.boxes), (64, 96), (43, 64))
        low_res, _ = SamPromptDecoderDeploy(sam)(embedding, boxes, torch.zeros(2).long())
    masks = postprocess_masks(low_res, 64, (43, 64), (64, 96))
    expected = merge_masks(masks, torch.from_numpy(refined.confidences)).numpy()
    assert np.mean(np.isclose(result.s2m_score, expected)) > 0.99
    assert set(np.unique(result.s2m_score)) <= {0.0, *refined.confidences.tolist()}
    assert 0 < (result.s2m_score > 0).sum() < result.s2m_score.size
    kept = postprocess(result.s2m_score, result.semantic,
                       PostprocessConfig(score_threshold=0.0, min_obstacle_area=4))
    assert np.array_equal(result.mask, kept.mask)
    assert result.obstacles == kept.obstacles
    assert all(o.score_max in refined.confidences for o in result.obstacles)


def test_sam_runs_only_for_frames_whose_outputs_need_it(backend, sam_runner):
    first, second = scene(64, 96, (10, 8, 20, 16)), scene(64, 96, (60, 30, 14, 12))
    refiner = Refiner(sam_runner, RefineConfig(mode="s2m"), score_range=(0.0, 1.0))
    pipeline = Pipeline(backend, CONFIG, refiner=refiner)
    [alone] = pipeline.process([second])
    score_only = Outputs(score="model", semantic=False, obstacles=False, s2m=False)
    skipped, refined = pipeline.process([first, second], [score_only, Outputs()])
    assert skipped.mask is None and skipped.s2m_score is None
    assert not set(REFINE_STAGES) & set(skipped.timings)  # SAM never saw this frame
    assert skipped.anomaly_score.shape == (64, 96)  # the model's size (the tiny graph's)
    np.testing.assert_array_equal(refined.s2m_score, alone.s2m_score)
    np.testing.assert_array_equal(refined.mask, alone.mask)
    [nothing] = pipeline.process([first], Outputs(score=None, semantic=False,
                                                  obstacles=False, s2m=False))
    assert nothing.timings.keys().isdisjoint(REFINE_STAGES)


def test_a_frame_without_components_gets_an_empty_map(backend, sam_runner):
    refiner = Refiner(sam_runner, RefineConfig(mode="s2m"), score_range=(0.0, 1.0))
    frames = [scene(64, 96), scene(120, 200, (30, 30, 40, 30))]  # two frames, one batch
    empty, other = Pipeline(backend, CONFIG, refiner=refiner).process(frames)
    assert empty.s2m_score.shape == (64, 96) and not empty.s2m_score.any()
    assert not empty.mask.any() and empty.obstacles == []
    assert other.s2m_score.shape == (120, 200) and other.s2m_score.any()


def test_detector_prompts_run_on_the_score_map(backend, sam_runner):
    detector = random_detector(seed=0)
    refiner = Refiner(sam_runner, RefineConfig(mode="s2m", boxes="detector",
                                               detector_score_scale=8.0), detector)
    frames = [scene(100, 140, (20, 20, 40, 30)), scene(90, 150, (80, 40, 30, 30))]
    results = Pipeline(backend, CONFIG, refiner=refiner).process(frames)
    with torch.no_grad():
        detections = detector([torch.from_numpy(r.anomaly_score) * 8.0 for r in results])
    for result, found in zip(results, detections, strict=True):
        assert len(found.scores) > 0
        assert set(np.unique(result.s2m_score)) <= {0.0, *found.scores.tolist()}
        assert result.s2m_score.max() <= 1.0


@pytest.mark.parametrize("fields", [{"mode": "crf"}, {"boxes": "points"},
                                    {"detector_score_scale": 0.0},
                                    {"detector_score_scale": float("nan")}])
def test_bad_refine_settings_are_refused(fields):
    with pytest.raises(ConfigurationError):
        RefineConfig(**fields)


def test_refiners_need_what_their_prompts_come_from(sam_runner, tiny_sam, tmp_path):
    with pytest.raises(ConfigurationError, match="mode 's2m'"):
        Refiner(sam_runner, RefineConfig())
    with pytest.raises(ConfigurationError, match="checkpoint"):
        Refiner(sam_runner, RefineConfig(mode="s2m", boxes="detector"))
    with pytest.raises(ConfigurationError, match="boxes 'detector'"):
        open_refiner(str(tiny_sam.encoder), RefineConfig(mode="s2m"),
                     detector_checkpoint=str(tmp_path / "model_final.pth"))
