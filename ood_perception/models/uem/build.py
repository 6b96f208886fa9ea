"""Registry builders for the UEM family: ExportRequest -> DeployModel."""

from __future__ import annotations

import logging

import torch

from ood_perception import __version__
from ood_perception.contract import CITYSCAPES_CLASSES, ModelInfo
from ood_perception.errors import ConfigurationError
from ood_perception.models.deploy import DeployModel
from ood_perception.models.loading import load_strict
from ood_perception.models.registry import ExportRequest
from ood_perception.models.tiling import (
    ScoredNetwork,
    SingleWindow,
    SlidingWindow,
    covers_like_official,
)
from ood_perception.models.uem.checkpoints import (
    compare_segmentor_states,
    convert_uem_state,
    load_state_dict,
)
from ood_perception.models.uem.network import UEMConfig, UEMNetwork, uem_config
from ood_perception.models.uem.scores import ScoreHead

LOGGER = logging.getLogger(__name__)
# Official evaluation protocol (configs/segmentation/ood/base.yaml EVAL_WINDOW_SIZE and
# EVAL_STRIDE, used by modeling/ood_segmentation.py): 518x1036 windows, stride 140.
DEFAULT_WINDOW = (518, 1036)
DEFAULT_STRIDE = 140
DEFAULT_SCORE = "llr"


def _network_state(request: ExportRequest) -> dict[str, torch.Tensor]:
    """The UEM file's tensors; a segmentor file fills only what it lacks (official order),
    and any difference between the two is reported."""
    if request.checkpoint is None:
        raise ConfigurationError("UEM export needs --checkpoint (UEM .ckpt) or --random-init")
    state = load_state_dict(request.checkpoint)
    if not request.segmentor_checkpoint:
        return convert_uem_state(state)
    segmentor = load_state_dict(request.segmentor_checkpoint)
    note = compare_segmentor_states(state, segmentor).describe(request.checkpoint,
                                                               request.segmentor_checkpoint)
    if note:
        LOGGER.warning("%s", note)
    return convert_uem_state(state, segmentor)


def build_uem(request: ExportRequest, cfg: UEMConfig) -> DeployModel:
    """Shared builder: network (+ weights) -> coverage -> score -> DeployModel."""
    if request.random_init and (request.checkpoint or request.segmentor_checkpoint):
        raise ConfigurationError("--random-init excludes --checkpoint/--segmentor-checkpoint")
    if request.decoder_layers is not None or request.queries is not None:
        raise ConfigurationError("decoder layers and queries apply to Mask2Former, not UEM")
    unused = [flag for flag, value in (("--test-resize", request.test_resize),
                                       ("--resize-back", request.resize_back))
              if value is not None]
    if unused:
        raise ConfigurationError(f"{', '.join(unused)} apply to Mask2Former, not UEM (UEM "
                                 "slides windows over the frame at its own size)")
    window = tuple(request.window or DEFAULT_WINDOW)
    size = tuple(request.input_size)
    if request.single_window and (request.stride is not None or request.window_chunk):
        raise ConfigurationError("--stride and --window-chunk apply to sliding windows, not "
                                 "--single-window")
    torch.manual_seed(request.seed)
    network = UEMNetwork(cfg, window)
    if not request.random_init:
        load_strict(network, _network_state(request), request.checkpoint or "checkpoint")
    network.eval()
    stride = request.stride or DEFAULT_STRIDE
    if request.single_window:
        coverage = SingleWindow(network, size, window)
        tiling = {"mode": "single", "window": list(window)}
    else:
        if window[0] > size[0] or window[1] > size[1]:
            raise ConfigurationError(
                f"window {window[0]}x{window[1]} is larger than the input size "
                f"{size[0]}x{size[1]}; use --single-window or a smaller --window")
        coverage = SlidingWindow(network, size, window, stride, request.window_chunk)
        official = covers_like_official(size, window, stride)
        if not official:
            LOGGER.warning(
                "the official window enumeration leaves part of a %dx%d input uncovered "
                "(side - window a multiple of the stride %d); these windows add the last one, so "
                "scores differ from the official protocol's on that input size", *size, stride)
        tiling = {"mode": "sliding", "window": list(window), "stride": stride,
                  "windows": len(coverage.windows), "official_windows": official,
                  "chunk": coverage.chunk}
    score = request.score or DEFAULT_SCORE
    info = ModelInfo(
        input_height=size[0], input_width=size[1],
        model_name=f"{request.model}-{cfg.variant}", score_name=score,
        class_names=CITYSCAPES_CLASSES[:cfg.num_classes]
        if cfg.num_classes <= len(CITYSCAPES_CLASSES) else (),
        tiling=tiling, producer=f"ood_perception {__version__}")
    return DeployModel(ScoredNetwork(coverage, ScoreHead(score)), info).eval()


def _build_size(size: str, request: ExportRequest) -> DeployModel:
    return build_uem(request, uem_config(size, request.variant or "dd"))


def build_uem_dinov2_s(request: ExportRequest) -> DeployModel:
    """ViT-S/14 with registers (not released officially; same heads as ViT-B)."""
    return _build_size("s", request)


def build_uem_dinov2_b(request: ExportRequest) -> DeployModel:
    """ViT-B/14 with registers: the official UEM checkpoints."""
    return _build_size("b", request)


def build_uem_dinov2_l(request: ExportRequest) -> DeployModel:
    """ViT-L/14 with registers (not released officially)."""
    return _build_size("l", request)
