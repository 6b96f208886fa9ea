"""Official UEM Lightning checkpoints <-> our state dicts, loaded without running pickled code.

Loading: `torch.load(weights_only=True, mmap=True)` first. The official `.ckpt` files also
hold `hyper_parameters` as pickled easydict objects, which weights_only refuses; then a
restricted unpickler reads the file instead: tensors and plain containers are rebuilt, every
other global (easydict, ...) becomes an inert `_Opaque` placeholder whose code never runs,
and only `state_dict` is kept.
"""

from __future__ import annotations

import collections
import importlib
import pickle
import types
from dataclasses import dataclass
from pathlib import Path

import torch

from ood_perception.errors import CheckpointError
from ood_perception.models.loading import check_prefixes

# Head state used only while training GMMSeg (memory queue, counters): not needed for inference.
TRAINING_ONLY_SUFFIXES = (".queue", ".queue_ptr", ".iteration_counter", ".eye_matrix")
# Lightning-module members, at any depth, that are not part of inference (metrics, losses).
TRAINING_ONLY_MODULES = ("iou_metric", "ood_metrics_idd", "ood_metrics_ood", "ood_metrics_llr",
                         "criterion")
SEGMENTOR_PREFIXES = ("backbone.dinov2.", "backbone.learnable_layers.", "segmentation_head.")
UEM_PREFIXES = ("segmentor.", "ood_projector.", "ood_head.")

_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}


class _Opaque(dict):
    """Stand-in for any non-allow-listed pickled object; keeps nothing, runs nothing."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __setstate__(self, state) -> None:
        return None

    def __setitem__(self, key, value) -> None:
        return None


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module in ("torch", "torch.storage") and name.endswith("Storage"):
            return getattr(importlib.import_module(module), name)
        return _Opaque


_RESTRICTED_PICKLE = types.ModuleType("ood_perception_restricted_pickle")
_RESTRICTED_PICKLE.Unpickler = _RestrictedUnpickler
_RESTRICTED_PICKLE.load = pickle.load


def _load(path: Path, mmap: bool) -> object:
    """weights_only first; the restricted unpickler only when weights_only refuses the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap,
                          pickle_module=_RESTRICTED_PICKLE)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The `state_dict` of a Lightning `.ckpt` (or a bare state dict), memory-mapped."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        try:
            payload = _load(path, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            payload = _load(path, mmap=False)  # legacy (pre-zip) serialisation
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {first}") from exc
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not all(
            isinstance(v, torch.Tensor) for v in payload.values()):
        raise CheckpointError(f"{path} holds no state_dict of tensors")
    return dict(payload)


def _needed(key: str) -> bool:
    if key.endswith(TRAINING_ONLY_SUFFIXES):
        return False
    return not any(part in TRAINING_ONLY_MODULES for part in key.split("."))


def convert_segmentor_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official `SegmentationModel` state -> `UEMSegmentor` state (same names, inference only)."""
    state = {k: v for k, v in state.items() if _needed(k)}
    check_prefixes(state, SEGMENTOR_PREFIXES, "segmentor")
    return state


def convert_uem_state(state: dict[str, torch.Tensor],
                      segmentor_state: dict[str, torch.Tensor] | None = None
                      ) -> dict[str, torch.Tensor]:
    """Official `OoDSegmentationModel` state -> `UEMNetwork` state.

    The UEM file's own `segmentor.*` tensors win, as in the official evaluation: it builds the
    segmentor from the segmentor checkpoint, then loads the UEM checkpoint over the whole
    model. `segmentor_state` (an official segmentor checkpoint) fills only what the UEM file
    lacks.
    """
    state = {k: v for k, v in state.items() if _needed(k)}
    if segmentor_state is not None:
        for key, value in convert_segmentor_state(segmentor_state).items():
            state.setdefault("segmentor." + key, value)
    check_prefixes(state, UEM_PREFIXES, "UEM")
    return state


@dataclass(frozen=True)
class SegmentorComparison:
    """A UEM checkpoint's `segmentor.*` tensors against a segmentor checkpoint's (inference
    tensors only). Official UEM training leaves the frozen segmentor in train mode, so its
    batch-norm statistics drift and the two files differ."""

    shared: int
    # Shared tensors whose values (or shapes) differ, and the largest |difference|.
    differing: tuple[str, ...]
    largest: float
    largest_key: str
    # Tensors only the segmentor file has: they fill the UEM file's gaps.
    filled: tuple[str, ...]

    def describe(self, uem_source: str, segmentor_source: str) -> str:
        """One line for the user; empty when the UEM file holds the segmentor file's tensors."""
        parts = []
        if self.differing:
            parts.append(
                f"{uem_source} and {segmentor_source} differ in {len(self.differing)} of "
                f"{self.shared} segmentor tensors (largest |difference| {self.largest:.3g} in "
                f"segmentor.{self.largest_key}); using the UEM checkpoint's, as the official "
                "evaluation does (it loads the UEM checkpoint over the segmentor)")
        if self.filled:
            parts.append(f"{len(self.filled)} segmentor tensors missing from {uem_source} "
                         f"taken from {segmentor_source}")
        return "; ".join(parts)


def compare_segmentor_states(state: dict[str, torch.Tensor],
                             segmentor_state: dict[str, torch.Tensor]) -> SegmentorComparison:
    """Compare the UEM file's `segmentor.*` with a segmentor file, tensor by tensor."""
    ours = {k.removeprefix("segmentor."): v for k, v in state.items()
            if k.startswith("segmentor.") and _needed(k)}
    theirs = convert_segmentor_state(segmentor_state)
    differing, largest, largest_key = [], 0.0, ""
    shared = sorted(set(ours) & set(theirs))
    for key in shared:
        a, b = ours[key], theirs[key]
        if a.shape != b.shape:
            differing.append(key)
            continue
        difference = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
        if difference > 0:
            differing.append(key)
            if difference > largest:
                largest, largest_key = difference, key
    return SegmentorComparison(
        shared=len(shared), differing=tuple(differing), largest=largest,
        largest_key=largest_key, filled=tuple(sorted(set(theirs) - set(ours))))


def save_lightning_checkpoint(state: dict[str, torch.Tensor], path: str | Path,
                              hyper_parameters: object | None = None) -> Path:
    """Write `{"state_dict": ..., "hyper_parameters": ...}` like a Lightning `.ckpt`."""
    path = Path(path)
    payload = {"state_dict": state, "epoch": 0, "global_step": 0}
    if hyper_parameters is not None:
        payload["hyper_parameters"] = hyper_parameters
    torch.save(payload, path)
    return path
