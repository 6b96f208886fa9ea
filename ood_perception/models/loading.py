"""Strict state-dict loading that names every key a checkpoint gets wrong."""

from __future__ import annotations

import torch

from ood_perception.errors import CheckpointError


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `module`; missing, unexpected or mis-shaped keys raise CheckpointError.

    Values are cast to the module's dtypes (checkpoints saved in fp16 load into fp32 models).
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
                    for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        parts = [f"{label} ({len(keys)}): {', '.join(keys[:20])}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("shape", shapes)) if keys]
        raise CheckpointError(f"{source} does not match the model; " + "; ".join(parts))
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def check_prefixes(state: dict[str, torch.Tensor], prefixes: tuple[str, ...], what: str) -> None:
    """CheckpointError naming the keys outside `prefixes`: the file is not the format asked for."""
    unexpected = sorted(k for k in state if not k.startswith(prefixes))
    if unexpected:
        raise CheckpointError(f"{what} checkpoint has unexpected keys (expected prefixes "
                              f"{', '.join(prefixes)}): {', '.join(unexpected[:20])}")
