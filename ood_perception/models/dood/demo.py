"""`dood-demo`: DOoD on the embedded UEM demo's segmentor, trained on synthetic scenes.

The segmentor is `uem-demo`'s (frozen, its `segmentor.*` weights in
`assets/uem_demo.ckpt`); only the denoiser was trained, by `train-dood` on anomaly-free
synthetic scenes (docs/dood.md). `assets/dood_demo_diff.pth` holds it in the official
diffusion layout (fp16 values); `assets/dood_demo_diff.stats.json` the compound score's
in-distribution statistics. Same window as `uem-demo`: the 224x448 camera scaled into
one 336x672 window.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ood_perception.errors import ConfigurationError
from ood_perception.models.deploy import DeployModel
from ood_perception.models.dood.build import DEFAULT_SCORE, build_dinov2_dood
from ood_perception.models.dood.compound import read_statistics
from ood_perception.models.registry import ExportRequest
from ood_perception.models.uem.demo import DEMO_CHECKPOINT, DEMO_WINDOW, demo_config

ASSETS = Path(__file__).resolve().parents[2] / "assets"
DOOD_DEMO_CHECKPOINT = ASSETS / "dood_demo_diff.pth"
DOOD_DEMO_STATS = ASSETS / "dood_demo_diff.stats.json"
# Compound-score range of the embedded weights on held-out synthetic scenes (inliers from
# about -3); its midpoint, 5, is the default obstacle threshold (docs/dood.md).
DOOD_DEMO_SCORE_RANGE = (-3.0, 13.0)


def _embedded(path: Path) -> str:
    if not path.is_file():
        raise ConfigurationError(
            f"the embedded DOoD demo file {path} is missing; reinstall the package, train one "
            "(docs/dood.md), or pass --checkpoint/--segmentor-checkpoint/--random-init")
    return str(path)


def build_dood_demo(request: ExportRequest) -> DeployModel:
    """One 336x672 window unless --window/--stride say otherwise; the embedded segmentor,
    denoiser and statistics unless --segmentor-checkpoint, --checkpoint (then --dood-stats
    for the compound score) or --random-init."""
    stats = request.dood_stats
    compound = (request.score or DEFAULT_SCORE) == "compound"
    # The range below was measured for the embedded weights' compound score only.
    embedded_range = compound and not request.random_init and request.checkpoint is None
    if not request.random_init:
        if request.checkpoint is None and stats is None and compound:
            stats = read_statistics(_embedded(DOOD_DEMO_STATS)).to_dict()
        request = replace(
            request, dood_stats=stats,
            segmentor_checkpoint=request.segmentor_checkpoint or _embedded(DEMO_CHECKPOINT),
            checkpoint=request.checkpoint or _embedded(DOOD_DEMO_CHECKPOINT))
    deploy = build_dinov2_dood(request, demo_config(request.variant or "dd"), DEMO_WINDOW,
                               single_window=request.stride is None)
    if embedded_range:
        deploy.info = replace(deploy.info, score_range=DOOD_DEMO_SCORE_RANGE)
    return deploy
