"""Model name -> lazy builder path; a builder turns an `ExportRequest` into a DeployModel."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ood_perception.errors import ConfigurationError
from ood_perception.models.deploy import DeployModel


@dataclass(frozen=True)
class ExportRequest:
    """The export CLI fields; a builder ignores none silently (it rejects what does not apply)."""

    model: str
    variant: str | None = None
    checkpoint: str | None = None
    segmentor_checkpoint: str | None = None
    random_init: bool = False
    # None = the family default (llr for UEM).
    score: str | None = None
    input_size: tuple[int, int] = (1024, 2048)
    # None = the family default window / stride.
    window: tuple[int, int] | None = None
    stride: int | None = None
    single_window: bool = False
    seed: int = 0
    # Mask2Former decoder depth and object queries; None = the checkpoint's (9 and 100 at
    # random init). A `.pt` deploy file records them to rebuild the same network.
    decoder_layers: int | None = None
    queries: int | None = None
    # UEM sliding windows per network call (None = all windows of a frame in one batch).
    window_chunk: int | None = None
    # Mask2Former: detectron2's test resize inside the graph (None = on with a checkpoint, off
    # at random init) and what goes back to the input size (None = "masks", the official
    # order, or "score").
    test_resize: bool | None = None
    resize_back: str | None = None
    # DOoD: diffusion time steps (None = 25), their weighting ("official" plain sum or the
    # paper's "eq8"), and the compound score's in-distribution statistics (the content of a
    # `dood-stats` file, so a `.pt` deploy file rebuilds the same graph).
    timesteps: int | None = None
    timestep_weighting: str | None = None
    dood_stats: dict | None = None
    # DOoD denoiser shape (`UNet0DConfig` fields); None = the checkpoint's (the model's default
    # at random init). A `.pt` deploy file records it to rebuild the same network.
    denoiser: dict | None = None


MODELS: dict[str, str] = {
    "uem-dinov2-s": "ood_perception.models.uem.build:build_uem_dinov2_s",
    "uem-dinov2-b": "ood_perception.models.uem.build:build_uem_dinov2_b",
    "uem-dinov2-l": "ood_perception.models.uem.build:build_uem_dinov2_l",
    "uem-demo": "ood_perception.models.uem.demo:build_uem_demo",
    "uno-m2f-swin-l": "ood_perception.models.mask2former.build:build_uno_m2f_swin_l",
    "uno-m2f-swin-t": "ood_perception.models.mask2former.build:build_uno_m2f_swin_t",
    "uno-m2f-swin-b": "ood_perception.models.mask2former.build:build_uno_m2f_swin_b",
    "uno-m2f-r50": "ood_perception.models.mask2former.build:build_uno_m2f_r50",
    "uno-m2f-r101": "ood_perception.models.mask2former.build:build_uno_m2f_r101",
    "dood-segmenter-b": "ood_perception.models.dood.build:build_dood_segmenter_b",
    "dood-setr-l": "ood_perception.models.dood.build:build_dood_setr_l",
    "dood-setr-l-ade20k": "ood_perception.models.dood.build:build_dood_setr_l_ade20k",
    "dood-uem-dinov2-s": "ood_perception.models.dood.build:build_dood_uem_dinov2_s",
    "dood-uem-dinov2-b": "ood_perception.models.dood.build:build_dood_uem_dinov2_b",
    "dood-uem-dinov2-l": "ood_perception.models.dood.build:build_dood_uem_dinov2_l",
    "dood-demo": "ood_perception.models.dood.demo:build_dood_demo",
}


def resolve_builder(name: str):
    """The builder function of a model name (imports its module only now)."""
    if name not in MODELS:
        raise ConfigurationError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    module_name, func_name = MODELS[name].split(":")
    return getattr(importlib.import_module(module_name), func_name)


def build_model(request: ExportRequest) -> DeployModel:
    """Build the deploy wrapper a request describes."""
    return resolve_builder(request.model)(request)
