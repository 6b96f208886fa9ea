"""The S2M detector's detectron2 checkpoint (`model_final.pth`, or a model-zoo `.pkl`) ->
strict loading, without running code.

Read as every detectron2 file is here (`torch.load(weights_only=True)`, or a numpy-only
unpickler for `.pkl`); `pixel_mean`/`pixel_std`, which older detectron2 versions saved, are
checked against the detector's preprocessing and dropped. Everything else must match.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ood_perception.errors import CheckpointError
from ood_perception.models.loading import load_strict
from ood_perception.models.mask2former.checkpoints import load_m2f_state
from ood_perception.models.s2m.detector import ScoreBoxDetector

NORMALISATION_KEYS = ("pixel_mean", "pixel_std")


def inference_state(state: dict[str, torch.Tensor], model: ScoreBoxDetector,
                    source: str) -> dict[str, torch.Tensor]:
    """Drop the normalisation buffers after checking they are what `model.prepare` applies."""
    for key in NORMALISATION_KEYS:
        if key in state and not torch.allclose(state[key].flatten().double(),
                                               getattr(model, key).flatten().double(),
                                               atol=1e-3):
            raise CheckpointError(f"{source}: {key} {state[key].flatten().tolist()} differs from "
                                  f"the detector's {getattr(model, key).flatten().tolist()}")
    return {k: v for k, v in state.items() if k not in NORMALISATION_KEYS}


def load_detector_checkpoint(model: ScoreBoxDetector, path: str | Path) -> ScoreBoxDetector:
    """detectron2 checkpoint -> `model`, strictly (missing, extra or mis-shaped keys listed)."""
    state = load_m2f_state(path)  # the detectron2 reader (the `model` dict, tensors only)
    load_strict(model, inference_state(state, model, str(path)), str(path))
    return model
