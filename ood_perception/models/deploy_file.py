"""The `.pt` deploy file: a DeployModel's builder arguments, metadata and weights.

A plain dict loadable with `torch.load(weights_only=True)` (docs/architecture.md); the torch
backend rebuilds the network through the registry and loads the weights strictly.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch

from ood_perception.errors import ConfigurationError
from ood_perception.models.deploy import DeployModel
from ood_perception.models.registry import ExportRequest, build_model

DEPLOY_FORMAT = "ood_perception.deploy/1"


def save_torch_deploy(deploy: DeployModel, request: ExportRequest, path: str | Path) -> Path:
    """Write the `.pt` deploy dict (docs/architecture.md), loadable with weights_only=True."""
    build = asdict(replace(
        request, checkpoint=None, segmentor_checkpoint=None, random_init=True,
        variant=getattr(deploy, "variant", request.variant),
        decoder_layers=getattr(deploy, "decoder_layers", request.decoder_layers),
        queries=getattr(deploy, "queries", request.queries),
        test_resize=getattr(deploy, "test_resize", request.test_resize),
        denoiser=getattr(deploy, "denoiser", request.denoiser)))
    payload = {
        "format": DEPLOY_FORMAT, "model": request.model, "build": build,
        "metadata": deploy.info.to_metadata(),
        "state_dict": {k: v.detach().cpu() for k, v in deploy.state_dict().items()},
    }
    path = Path(path)
    torch.save(payload, path)
    return path


def load_torch_deploy(path: str | Path) -> DeployModel:
    """Rebuild a DeployModel through the registry from a `.pt` deploy file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"torch deploy file not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != DEPLOY_FORMAT:
        raise ConfigurationError(f"{path} is not an {DEPLOY_FORMAT} file")
    build = dict(payload["build"])
    for key in ("input_size", "window"):
        if build.get(key) is not None:
            build[key] = tuple(build[key])
    deploy = build_model(ExportRequest(**build))
    deploy.load_state_dict(payload["state_dict"], strict=True)
    return deploy.eval()
