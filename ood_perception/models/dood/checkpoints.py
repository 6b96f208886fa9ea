"""DOoD checkpoints (lmb-freiburg/diffusion-for-ood releases) <-> this package's state dicts.

`*_segm.pth`: `{"state_dict": {backbone.*, decode_head.*, auxiliary_head.*}}` (mmseg
`EncoderDecoder`); `*_diff.pth`: `{"state_dict": {normalization.*, denoiser.*}}`. Both are
read with `weights_only=True` (a restricted unpickler only for pickled metadata, see
`models.uem.checkpoints.load_state_dict`). Keys not needed for inference are dropped by
name: SETR's auxiliary heads (training losses) and the normalisation's statistic queues.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ood_perception.errors import CheckpointError, ConfigurationError
from ood_perception.models.dood.diffusion import DiffusionModel
from ood_perception.models.dood.network import DinoV2KeySegmentor
from ood_perception.models.dood.normalization import shift_and_scale
from ood_perception.models.dood.unet0d import UNet0DConfig
from ood_perception.models.loading import check_prefixes, load_strict
from ood_perception.models.uem.checkpoints import convert_segmentor_state, load_state_dict

SEGMENTOR_PREFIXES = ("backbone.", "decode_head.")
# SETR's deep-supervision heads: training only.
SEGMENTOR_TRAINING_ONLY = ("auxiliary_head.",)
DIFFUSION_PREFIXES = ("normalization.", "denoiser.")
# FeatureNormalization's running statistics: training only (inference uses shift and scale).
NORMALIZATION_TRAINING_ONLY = tuple(
    f"normalization.{name}"
    for name in ("mins", "maxs", "means", "stds", "queue_ptr", "min", "max", "mean", "std"))


def convert_mmseg_segmentor_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official `*_segm.pth` state -> `MMSegSegmentor` state (auxiliary heads dropped)."""
    state = {k: v for k, v in state.items() if not k.startswith(SEGMENTOR_TRAINING_ONLY)}
    check_prefixes(state, SEGMENTOR_PREFIXES, "DOoD segmentor")
    return state


def convert_dinov2_segmentor_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A UEM segmentor `.ckpt` state, or a full UEM `.ckpt` (its `segmentor.*` part) ->
    `DinoV2KeySegmentor` state."""
    if any(k.startswith("segmentor.") for k in state):
        state = {k.removeprefix("segmentor."): v for k, v in state.items()
                 if k.startswith("segmentor.")}
    return convert_segmentor_state(state)


def convert_diffusion_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official `*_diff.pth` state -> `DiffusionModel` state.

    Without stored `shift`/`scale`, they are computed from the min/max queues, as the
    official loader does.
    """
    state = dict(state)
    if "normalization.shift" not in state or "normalization.scale" not in state:
        if "normalization.mins" not in state or "normalization.maxs" not in state:
            raise CheckpointError("diffusion checkpoint has neither normalization.shift/scale "
                                  "nor the normalization.mins/maxs statistics")
        minimum = state["normalization.mins"].float().amin(dim=0)
        maximum = state["normalization.maxs"].float().amax(dim=0)
        if not (torch.isfinite(minimum).all() and torch.isfinite(maximum).all()):
            raise CheckpointError("diffusion checkpoint normalization statistics are empty")
        state["normalization.shift"], state["normalization.scale"] = shift_and_scale(
            minimum, maximum)
    state = {k: v for k, v in state.items() if k not in NORMALIZATION_TRAINING_ONLY}
    check_prefixes(state, DIFFUSION_PREFIXES, "DOoD diffusion")
    return state


def diffusion_config(state: dict[str, torch.Tensor]) -> UNet0DConfig:
    """The denoiser's shape as a (converted) diffusion state dict holds it."""
    try:
        first = state["denoiser.input_blocks.0.0.in_layers.2.weight"]
    except KeyError:
        raise CheckpointError("diffusion checkpoint has no denoiser.input_blocks.0 "
                              "(not a DOoD UNet0D)") from None

    def count(prefix: str) -> int:
        return len({k.split(".")[2] for k in state if k.startswith(prefix)})

    try:
        return UNet0DConfig(
            in_channels=first.shape[1], model_channels=first.shape[0],
            levels=count("denoiser.input_blocks."), middle_blocks=count("denoiser.middle_blocks."),
            time_embedding="periodic" if "denoiser.time_embed.2.weight" in state else "scalar",
            block_time_layers="denoiser.input_blocks.0.0.emb_layers.1.weight" in state)
    except ConfigurationError as error:
        raise CheckpointError(f"diffusion checkpoint has an unsupported denoiser: {error}"
                              ) from None


def load_segmentor(segmentor: nn.Module, path: str | Path) -> None:
    """Load a segmentor checkpoint strictly: a UEM `.ckpt` into the DINOv2 segmentor, an
    official `*_segm.pth` into the mmseg ones."""
    convert = (convert_dinov2_segmentor_state if isinstance(segmentor, DinoV2KeySegmentor)
               else convert_mmseg_segmentor_state)
    load_strict(segmentor, convert(load_state_dict(path)), str(path))


def load_diffusion(path: str | Path) -> DiffusionModel:
    """A diffusion checkpoint (`*_diff.pth` or train-dood's) as a model of its own shape."""
    state = convert_diffusion_state(load_state_dict(path))
    model = DiffusionModel(diffusion_config(state))
    load_strict(model, state, str(path))
    return model


def official_normalization_state(minimum: torch.Tensor, maximum: torch.Tensor,
                                 mean: torch.Tensor, std: torch.Tensor
                                 ) -> dict[str, torch.Tensor]:
    """`normalization.*` in the official layout from per-channel statistics [C].

    The statistic queues hold one row (an official `normalization_queue_size` of 1).
    """
    shift, scale = shift_and_scale(minimum, maximum)
    state = {"mins": minimum, "maxs": maximum, "means": mean, "stds": std}
    state = {k: v.reshape(1, -1).float().clone() for k, v in state.items()}
    state.update({"queue_ptr": torch.zeros(1, dtype=torch.long), "min": minimum, "max": maximum,
                  "mean": mean, "std": std, "shift": shift, "scale": scale})
    return {f"normalization.{k}": v.float().clone() if v.is_floating_point() else v
            for k, v in state.items()}


def save_official_checkpoint(state: dict[str, torch.Tensor], path: str | Path,
                             meta: dict | None = None) -> Path:
    """`{"state_dict": state, "meta": meta}` as the official `.pth` files (weights_only-safe)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {k: v.detach().cpu() for k, v in state.items()},
                "meta": meta or {}}, path)
    return path
