"""detectron2 Mask2Former checkpoints (`.pth` and `.pkl`) -> state dicts, without running code.

A checkpoint is untrusted input. `.pth` (detectron2 `Checkpointer`, e.g. Open-set-M2F's UNO /
EAM weights) is read with `torch.load(weights_only=True)`. `.pkl` (the Mask2Former model zoo)
is a pickled dict of numpy arrays: a restricted unpickler rebuilds numpy arrays and dtypes
(plus `_codecs.encode`, which protocol-2 pickles use for raw bytes) and refuses every other
global. Both keep the `model` dict; names are already ours.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np
import torch

from ood_perception.contract import IMAGENET_MEAN_255, IMAGENET_STD_255
from ood_perception.errors import CheckpointError
from ood_perception.models import loading as strict_loading

# Loss-only buffer of SetCriterion (no-object class weight): not needed for inference.
NOT_NEEDED = ("criterion.empty_weight",)
# Step counters of batch norms trained unfrozen (the R50/R101 configs' SyncBN); inference uses
# only their statistics and affine terms.
NOT_NEEDED_SUFFIXES = (".num_batches_tracked",)
# Registered non-persistent upstream; older detectron2 files may still carry them.
NORMALISATION_KEYS = ("pixel_mean", "pixel_std")
CLASS_KEY = "sem_seg_head.predictor.class_embed.weight"
QUERY_KEY = "sem_seg_head.predictor.query_feat.weight"

_MULTIARRAY = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
# Pickles of numpy 1.x name numpy.core, those of numpy 2.x numpy._core.
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _MULTIARRAY._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _MULTIARRAY._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Protocol-2 pickles written by Python 3 carry array bytes as _codecs.encode(str, "latin1").
    ("_codecs", "encode"): codecs.encode,
}


class _NumpyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays only; any other global is refused before it is looked up."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weights file")


def _read_pkl(path: Path) -> object:
    with path.open("rb") as f:
        return _NumpyUnpickler(f, encoding="latin1").load()


def _read_pth(path: Path) -> object:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_m2f_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The `model` dict of a detectron2 checkpoint as float tensors, loss buffers dropped."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    reader = _read_pkl if path.suffix == ".pkl" else _read_pth
    try:
        payload = reader(path)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path} is not a readable detectron2 checkpoint: {first}") from exc
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict):
        payload = payload["model"]
    if not isinstance(payload, dict) or not payload:
        raise CheckpointError(f"{path} holds no `model` dict of weights")
    state = {}
    for key, value in payload.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: {key} is a {type(value).__name__}, not an array")
        if _needed(key):
            state[key] = value
    return state


def _needed(key: str) -> bool:
    return key not in NOT_NEEDED and not key.endswith(NOT_NEEDED_SUFFIXES)


def head_sizes(state: dict[str, torch.Tensor], source: str) -> tuple[int, int]:
    """(class outputs including no-object, queries) of a checkpoint."""
    missing = [k for k in (CLASS_KEY, QUERY_KEY) if k not in state]
    if missing:
        raise CheckpointError(f"{source} is not a Mask2Former checkpoint; missing: "
                              f"{', '.join(missing)}")
    return int(state[CLASS_KEY].shape[0]), int(state[QUERY_KEY].shape[0])


def decoder_layers(state: dict[str, torch.Tensor]) -> int:
    """Masked-attention decoder layers of a checkpoint (DEC_LAYERS - 1: 9 for the Mask2Former
    and UNO configs, 1 for RbA's single-layer models)."""
    prefix = "sem_seg_head.predictor.transformer_self_attention_layers."
    return len({key[len(prefix):].split(".")[0] for key in state if key.startswith(prefix)})


def inference_state(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Drop the loss buffer, and pixel_mean/std after checking they are what the graph applies."""
    expected = {"pixel_mean": IMAGENET_MEAN_255, "pixel_std": IMAGENET_STD_255}
    for key in NORMALISATION_KEYS:
        if key in state and not torch.allclose(state[key].flatten().double(),
                                               torch.tensor(expected[key]).double(), atol=1e-3):
            raise CheckpointError(f"{source}: {key} {state[key].flatten().tolist()} differs from "
                                  f"detectron2's {list(expected[key])}, which the graph applies")
    return {k: v for k, v in state.items() if k not in NORMALISATION_KEYS and _needed(k)}


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """detectron2 `state` (normalisation buffers checked, then dropped) -> `module`, strictly."""
    strict_loading.load_strict(module, inference_state(state, source), source)
