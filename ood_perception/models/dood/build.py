"""Registry builders for DOoD: ExportRequest -> DeployModel.

`--segmentor-checkpoint` is the segmentor (`*_segm.pth`, or a UEM `.ckpt` for the DINOv2
models), `--checkpoint` the diffusion model (`*_diff.pth`, or `train-dood`'s). The official
models run the whole image at the input size (mmseg "whole" inference); the DINOv2 ones cover
it with UEM's windows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import torch
from torch import nn

from ood_perception import __version__
from ood_perception.contract import CITYSCAPES_CLASSES, ModelInfo
from ood_perception.errors import ConfigurationError
from ood_perception.models.backbones.mmseg_vit import (
    MMSegVisionTransformer,
    segmenter_vit_b,
    setr_vit_l,
)
from ood_perception.models.deploy import DeployModel
from ood_perception.models.dood.checkpoints import load_diffusion, load_segmentor
from ood_perception.models.dood.compound import DOoDScoreHead, DOoDStatistics
from ood_perception.models.dood.diffusion import (
    DEFAULT_TIMESTEPS,
    DiffusionModel,
    DiffusionScoreConfig,
)
from ood_perception.models.dood.network import (
    DinoV2KeySegmentor,
    DOoDNetwork,
    MMSegSegmentor,
    WholeImage,
)
from ood_perception.models.dood.segmenter_head import SegmenterMaskHead
from ood_perception.models.dood.setr_head import SETRUpHead
from ood_perception.models.dood.unet0d import UNet0DConfig
from ood_perception.models.registry import ExportRequest
from ood_perception.models.tiling import (
    ScoredNetwork,
    SingleWindow,
    SlidingWindow,
    covers_like_official,
)
from ood_perception.models.uem.build import DEFAULT_STRIDE, DEFAULT_WINDOW
from ood_perception.models.uem.network import UEMConfig, uem_config

DEFAULT_SCORE = "compound"
# The releases' denoisers (configs/models/*.py `DiffusionSetupHook`): what --random-init builds.
SEGMENTER_B_DENOISER = UNet0DConfig(768, 768)
SETR_L_DENOISER = UNet0DConfig(1024, 1024)
SETR_L_ADE20K_DENOISER = UNet0DConfig(1024, 1024, levels=8, middle_blocks=4,
                                      time_embedding="scalar", block_time_layers=False)


def score_config(request: ExportRequest) -> DiffusionScoreConfig:
    """The diffusion score a request asks for (25 steps, official weighting by default)."""
    return DiffusionScoreConfig(timesteps=request.timesteps or DEFAULT_TIMESTEPS,
                                weighting=request.timestep_weighting or "official")


def _statistics(request: ExportRequest, score: str,
                cfg: DiffusionScoreConfig) -> DOoDStatistics | None:
    if request.dood_stats is None:
        if score == "compound" and not request.random_init:
            raise ConfigurationError(
                "the compound DOoD score needs in-distribution statistics: pass --dood-stats "
                "FILE (written by `ood-perception dood-stats`), or --score diffusion|logsumexp")
        return None
    stats = DOoDStatistics.from_dict(request.dood_stats, "--dood-stats")
    stats.check_fits(cfg.timesteps, cfg.weighting)
    return stats


def _check_request(request: ExportRequest) -> None:
    if request.random_init and (request.checkpoint or request.segmentor_checkpoint):
        raise ConfigurationError("--random-init excludes --checkpoint/--segmentor-checkpoint")
    if not request.random_init and not (request.checkpoint and request.segmentor_checkpoint):
        raise ConfigurationError("DOoD export needs --segmentor-checkpoint (the segmentor) and "
                                 "--checkpoint (the diffusion model), or --random-init")
    if request.decoder_layers is not None or request.queries is not None:
        raise ConfigurationError("decoder layers and queries apply to Mask2Former, not DOoD")


def _diffusion(request: ExportRequest, default: UNet0DConfig) -> DiffusionModel:
    """The diffusion checkpoint's model; at random init every layer random (the official
    init zeroes the last ones, which leaves the cosine undefined)."""
    if request.random_init:
        model = DiffusionModel(UNet0DConfig(**request.denoiser) if request.denoiser else default)
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()
        return model
    return load_diffusion(request.checkpoint)


def _deploy(request: ExportRequest, coverage: nn.Module, tiling: dict,
            class_names: tuple[str, ...], cfg: DiffusionScoreConfig) -> DeployModel:
    score = request.score or DEFAULT_SCORE
    stats = _statistics(request, score, cfg)
    head = DOoDScoreHead(score, stats)
    denoiser = coverage.network.diffusion.denoiser.cfg
    info = ModelInfo(
        input_height=request.input_size[0], input_width=request.input_size[1],
        model_name=request.model, score_name=score, class_names=class_names, tiling=tiling,
        score_params={"diffusion": cfg.as_dict(),
                      "statistics": stats.to_dict() if stats is not None else None},
        producer=f"ood_perception {__version__}")
    deploy = DeployModel(ScoredNetwork(coverage, head), info).eval()
    deploy.denoiser = asdict(denoiser)
    return deploy


def build_mmseg_dood(request: ExportRequest,
                     segmentor: Callable[[tuple[int, int]], MMSegSegmentor],
                     denoiser: UNet0DConfig, class_names: tuple[str, ...]) -> DeployModel:
    """Shared builder of the official models: whole-image segmentor + diffusion score."""
    _check_request(request)
    if request.window or request.stride or request.single_window:
        raise ConfigurationError("the official DOoD models run the whole image at the input "
                                 "size; --window, --stride and --single-window do not apply")
    size = tuple(request.input_size)
    torch.manual_seed(request.seed)
    seg = segmentor(size)
    if not request.random_init:
        load_segmentor(seg, request.segmentor_checkpoint)
    cfg = score_config(request)
    network = DOoDNetwork(seg, _diffusion(request, denoiser), cfg).eval()
    return _deploy(request, WholeImage(network, size), {"mode": "whole"}, class_names, cfg)


def build_dinov2_dood(request: ExportRequest, uem: UEMConfig,
                      window: tuple[int, int] = DEFAULT_WINDOW,
                      single_window: bool = False) -> DeployModel:
    """Shared builder of DOoD on this package's DINOv2 segmentor, covered like UEM."""
    _check_request(request)
    window = tuple(request.window or window)
    size = tuple(request.input_size)
    single = single_window or request.single_window
    if single and request.stride is not None:
        raise ConfigurationError("--stride applies to sliding windows, not --single-window")
    torch.manual_seed(request.seed)
    seg = DinoV2KeySegmentor(uem.vit, window, uem.layers, uem.fpn_dim, uem.dino_mlp_hidden,
                             uem.segmentor_head, uem.num_classes, uem.gmm_components)
    if not request.random_init:
        load_segmentor(seg, request.segmentor_checkpoint)
    dim = uem.vit.embed_dim
    cfg = score_config(request)
    network = DOoDNetwork(seg, _diffusion(request, UNet0DConfig(dim, dim)), cfg).eval()
    if single:
        coverage = SingleWindow(network, size, window)
        tiling = {"mode": "single", "window": list(window)}
    else:
        stride = request.stride or DEFAULT_STRIDE
        if window[0] > size[0] or window[1] > size[1]:
            raise ConfigurationError(
                f"window {window[0]}x{window[1]} is larger than the input size "
                f"{size[0]}x{size[1]}; use --single-window or a smaller --window")
        coverage = SlidingWindow(network, size, window, stride)
        tiling = {"mode": "sliding", "window": list(window), "stride": stride,
                  "windows": len(coverage.windows),
                  "official_windows": covers_like_official(size, window, stride)}
    names = CITYSCAPES_CLASSES[:uem.num_classes] if uem.num_classes <= 19 else ()
    return _deploy(request, coverage, tiling, names, cfg)


def _segmenter_b(size: tuple[int, int]) -> MMSegSegmentor:
    return MMSegSegmentor(MMSegVisionTransformer(segmenter_vit_b(), size), SegmenterMaskHead())


def _setr_l(pos_grid: tuple[int, int], num_classes: int):
    def make(size: tuple[int, int]) -> MMSegSegmentor:
        return MMSegSegmentor(MMSegVisionTransformer(setr_vit_l(pos_grid), size),
                              SETRUpHead(num_classes=num_classes))
    return make


def build_dood_segmenter_b(request: ExportRequest) -> DeployModel:
    """Segmenter ViT-B/16 on Cityscapes (`segmenter_vit-b_cityscapes_{segm,diff}.pth`)."""
    return build_mmseg_dood(request, _segmenter_b, SEGMENTER_B_DENOISER, CITYSCAPES_CLASSES)


def build_dood_setr_l(request: ExportRequest) -> DeployModel:
    """SETR ViT-L/16 on Cityscapes (`setr_vit-l_cityscapes_{segm,diff}.pth`)."""
    return build_mmseg_dood(request, _setr_l((48, 48), 19), SETR_L_DENOISER, CITYSCAPES_CLASSES)


def build_dood_setr_l_ade20k(request: ExportRequest) -> DeployModel:
    """SETR ViT-L/16 on ADE20k's 150 classes (`setr_vit-l_ade20k_{segm,diff}.pth`): a
    deeper denoiser (8 levels, 4 middle blocks) with the scalar time embedding."""
    return build_mmseg_dood(request, _setr_l((32, 32), 150), SETR_L_ADE20K_DENOISER, ())


def _build_dinov2(size: str, request: ExportRequest) -> DeployModel:
    """`--variant` picks the segmentor head as for UEM (dd: linear, gd/gg: GMM)."""
    return build_dinov2_dood(request, uem_config(size, request.variant or "dd"))


def build_dood_uem_dinov2_s(request: ExportRequest) -> DeployModel:
    """DOoD on a UEM ViT-S/14 segmentor."""
    return _build_dinov2("s", request)


def build_dood_uem_dinov2_b(request: ExportRequest) -> DeployModel:
    """DOoD on a UEM ViT-B/14 segmentor (the official UEM segmentor checkpoints)."""
    return _build_dinov2("b", request)


def build_dood_uem_dinov2_l(request: ExportRequest) -> DeployModel:
    """DOoD on a UEM ViT-L/14 segmentor."""
    return _build_dinov2("l", request)
