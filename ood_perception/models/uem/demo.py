"""`uem-demo`: a small UEM trained on synthetic road scenes, embedded in the package.

Same architecture as the official models at a size that trains on two CPU cores in minutes
(docs/demo_model.md): ViT-S-like width 192, 6 blocks, patch 14, one 336x672 window fed
with the synthetic camera's 224x448 frames scaled by 1.5 (a 24x48 UEM grid: finer obstacle
edges than the camera size would give).
Without --checkpoint it loads the embedded weights `ood_perception/assets/uem_demo.ckpt`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ood_perception.errors import ConfigurationError
from ood_perception.models.backbones.dinov2 import ViTConfig
from ood_perception.models.deploy import DeployModel
from ood_perception.models.registry import ExportRequest
from ood_perception.models.uem.build import build_uem
from ood_perception.models.uem.network import VARIANTS, UEMConfig

DEMO_WINDOW = (336, 672)
# The synthetic camera (`synthetic.SceneConfig`) the demo model is trained and evaluated on.
DEMO_CAMERA = (224, 448)
DEMO_CHECKPOINT = Path(__file__).resolve().parents[2] / "assets" / "uem_demo.ckpt"
# LLR range of the embedded weights on held-out synthetic scenes; its midpoint (1.5) is the
# obstacle threshold: about 2/3 of anomaly pixels at 80% precision there (docs/demo_model.md).
DEMO_SCORE_RANGE = (-8.0, 11.0)


def demo_config(variant: str = "dd") -> UEMConfig:
    """The demo network; `variant` picks the heads as for the official models."""
    if variant not in VARIANTS:
        raise ConfigurationError(f"unknown UEM variant {variant!r}; known: {sorted(VARIANTS)}")
    segmentor_head, uem_head = VARIANTS[variant]
    return UEMConfig(
        vit=ViTConfig(embed_dim=192, depth=6, num_heads=3, pos_grid=16), layers=(0, 2, 4, 5),
        fpn_dim=64, dino_mlp_hidden=128, segmentor_head=segmentor_head, projector_hidden=128,
        projector_dim=64, uem_head=uem_head)


def build_uem_demo(request: ExportRequest) -> DeployModel:
    """Single window of 336x672 unless --window/--stride say otherwise; embedded weights
    unless --checkpoint or --random-init."""
    checkpoint = request.checkpoint
    if checkpoint is None and not request.random_init:
        if not DEMO_CHECKPOINT.is_file():
            raise ConfigurationError(
                f"the embedded demo checkpoint {DEMO_CHECKPOINT} is missing; reinstall the "
                "package, train one (docs/demo_model.md), or pass --checkpoint/--random-init")
        checkpoint = str(DEMO_CHECKPOINT)
    request = replace(request, checkpoint=checkpoint, window=request.window or DEMO_WINDOW,
                      single_window=request.single_window or request.stride is None)
    deploy = build_uem(request, demo_config(request.variant or "dd"))
    deploy.info = replace(deploy.info, score_range=DEMO_SCORE_RANGE)
    return deploy
