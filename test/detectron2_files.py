"""detectron2 checkpoint files written as detectron2 writes them, for the loaders' tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ood_perception.models.layers.frozen_batch_norm import FrozenBatchNorm2d
from ood_perception.models.mask2former.checkpoints import CLASS_KEY


def detectron2_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our state in the layout detectron2 saves (loss buffer and, for a ResNet trained with
    SyncBN, the batch norms' step counters included)."""
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    classes = state[CLASS_KEY].shape[0]
    state["criterion.empty_weight"] = torch.ones(classes)
    for name, child in module.named_modules():
        if isinstance(child, FrozenBatchNorm2d):
            state[f"{name}.num_batches_tracked"] = torch.tensor(90000)
    return state


def save_pth(state: dict[str, torch.Tensor], path: str | Path) -> Path:
    """detectron2 `Checkpointer` layout: {"model": ..., "iteration": ...}."""
    path = Path(path)
    torch.save({"model": state, "iteration": 0}, path)
    return path


def save_pkl(state: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Model-zoo layout: {"model": {name: numpy array}, "__author__": ...} (pickle protocol 4)."""
    path = Path(path)
    arrays = {k: v.detach().cpu().numpy() for k, v in state.items()}
    with path.open("wb") as f:
        pickle.dump({"model": arrays, "__author__": "ood_perception",
                     "matching_heuristics": True}, f, protocol=4)
    return path
