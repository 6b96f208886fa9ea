"""Registry builders for Mask2Former: ExportRequest -> DeployModel.

The class head (K+1 or K+2), the query count and the decoder depth come from the checkpoint;
random init builds the requested head with the official defaults, seeded. With the official
test resize the graph resizes the frame as detectron2 does (short side 1024, long side at most
2048), runs the network there and brings the outputs back to the frame's size.
"""

from __future__ import annotations

import torch

from ood_perception import __version__
from ood_perception.contract import (
    CITYSCAPES_CLASSES,
    IMAGENET_MEAN_255,
    IMAGENET_STD_255,
    ModelInfo,
)
from ood_perception.errors import CheckpointError, ConfigurationError
from ood_perception.models.backbones.resnet import ResNetConfig
from ood_perception.models.backbones.swin import SWIN_B, SWIN_L, SWIN_T, SwinConfig
from ood_perception.models.deploy import DeployModel
from ood_perception.models.mask2former.checkpoints import (
    decoder_layers,
    head_sizes,
    load_m2f_state,
    load_strict,
)
from ood_perception.models.mask2former.model import (
    DEFAULT_DECODER,
    DEFAULT_SCORE,
    KNOWN_CLASSES,
    RESIZE_BACK,
    VARIANT_OUTPUTS,
    Mask2Former,
    Mask2FormerConfig,
    Mask2FormerScored,
)
from ood_perception.models.mask2former.resize import PILBilinearResize, ShortestEdgeResize
from ood_perception.models.mask2former.scores import SCORE_RANGES, check_score
from ood_perception.models.mask2former.transformer_decoder import DecoderConfig
from ood_perception.models.registry import ExportRequest

# Open-set-M2F's (and Mask2Former's) Cityscapes R50/R101 configs: torchvision ImageNet weights,
# so MODEL.RESNETS.STRIDE_IN_1X1 False; their SyncBN runs as frozen statistics at test time.
RESNET_50 = ResNetConfig(depth=50, stride_in_1x1=False)
RESNET_101 = ResNetConfig(depth=101, stride_in_1x1=False)
# INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST of the Cityscapes configs.
TEST_RESIZE = ShortestEdgeResize(short_edge=1024, max_size=2048)


def _check_request(request: ExportRequest) -> None:
    unused = [flag for flag, value in (
        ("--segmentor-checkpoint", request.segmentor_checkpoint),
        ("--window", request.window), ("--stride", request.stride),
        ("--window-chunk", request.window_chunk)) if value is not None]
    if unused:
        raise ConfigurationError(f"{', '.join(unused)} do not apply to Mask2Former models "
                                 "(one pass over the whole frame)")
    if request.random_init == bool(request.checkpoint):
        raise ConfigurationError("Mask2Former export needs exactly one of --checkpoint "
                                 "(detectron2 .pth or .pkl) and --random-init")
    if request.variant is not None and request.variant not in VARIANT_OUTPUTS:
        raise ConfigurationError(f"Mask2Former variant must be one of "
                                 f"{', '.join(VARIANT_OUTPUTS)}, got {request.variant!r}")
    if min(request.input_size) <= 0:
        raise ConfigurationError(f"input size must be positive, got {request.input_size}")
    if request.resize_back is not None and request.resize_back not in RESIZE_BACK:
        raise ConfigurationError(f"--resize-back must be one of {', '.join(RESIZE_BACK)}, "
                                 f"got {request.resize_back!r}")


def build_mask2former(request: ExportRequest, backbone: SwinConfig | ResNetConfig,
                      test_resize: ShortestEdgeResize = TEST_RESIZE) -> DeployModel:
    """Shared builder: the class head (K+1 or K+2) and queries come from the checkpoint.

    Random init: the `variant` head ("uno" default) with 100 queries, seeded. `test_resize`:
    the official test-time resize, applied when the request asks for it (default: with a
    checkpoint).
    """
    _check_request(request)
    resized = not request.random_init if request.test_resize is None else request.test_resize
    if request.resize_back is not None and not resized:
        raise ConfigurationError("--resize-back applies with the official test resize "
                                 "(--test-resize)")
    score = request.score or DEFAULT_SCORE
    if request.random_init:
        variant = request.variant or "uno"
        outputs, state = VARIANT_OUTPUTS[variant], None
        queries = DEFAULT_DECODER.num_queries if request.queries is None else request.queries
        layers = (DEFAULT_DECODER.layers if request.decoder_layers is None
                  else request.decoder_layers)
    else:
        state = load_m2f_state(request.checkpoint)
        outputs, queries = head_sizes(state, request.checkpoint)
        layers = decoder_layers(state)
        for name, asked, found in (("decoder layers", request.decoder_layers, layers),
                                   ("queries", request.queries, queries)):
            if asked not in (None, found):
                raise ConfigurationError(f"{request.checkpoint} has {found} {name}, not {asked}")
        variant = {v: k for k, v in VARIANT_OUTPUTS.items()}.get(outputs)
        if variant is None:
            raise CheckpointError(f"{request.checkpoint} has {outputs} class outputs; a "
                                  f"Cityscapes model has {KNOWN_CLASSES + 1} (K + no-object) or "
                                  f"{KNOWN_CLASSES + 2} (K + negative + no-object)")
        if request.variant is not None and request.variant != variant:
            raise ConfigurationError(f"{request.checkpoint} has {outputs} class outputs, not the "
                                     f"{request.variant!r} head; leave the variant out")
    check_score(score, outputs, KNOWN_CLASSES)
    if layers < 1 or queries < 1:
        raise ConfigurationError(f"Mask2Former needs at least one decoder layer and one query, "
                                 f"got {layers} and {queries}")
    cfg = Mask2FormerConfig(backbone=backbone, decoder=DecoderConfig(
        num_classes=outputs - 1, num_queries=queries, layers=layers))
    torch.manual_seed(request.seed)
    model = Mask2Former(cfg)
    if state is not None:
        load_strict(model, state, request.checkpoint)
    size = tuple(request.input_size)
    tiling: dict = {"mode": "single"}
    resize = None
    resize_back = request.resize_back or RESIZE_BACK[0]
    if resized:
        network_size = test_resize.output_size(*size)
        tiling["test_resize"] = test_resize.to_metadata(size, resize_back)
        if network_size != size:
            resize = PILBilinearResize(size, network_size)
    info = ModelInfo(
        input_height=size[0], input_width=size[1], model_name=request.model, score_name=score,
        class_names=CITYSCAPES_CLASSES, mean=IMAGENET_MEAN_255, std=IMAGENET_STD_255,
        tiling=tiling, score_range=SCORE_RANGES[score],
        producer=f"ood_perception {__version__}")
    scored = Mask2FormerScored(model.eval(), score, output_size=size, resize_back=resize_back)
    deploy = DeployModel(scored, info, resize=resize).eval()
    # What a `.pt` deploy file must rebuild (random init, then its state dict): the head,
    # the decoder depth and whether the graph resizes.
    deploy.variant = variant
    deploy.decoder_layers = layers
    deploy.queries = queries
    deploy.test_resize = resized
    return deploy


def build_uno_m2f_swin_l(request: ExportRequest) -> DeployModel:
    """Swin-L (window 12): the official UNO / EAM checkpoints (Open-set-M2F)."""
    return build_mask2former(request, SWIN_L)


def build_uno_m2f_swin_b(request: ExportRequest) -> DeployModel:
    """Swin-B (window 12): Mask2Former model-zoo Cityscapes checkpoint (K+1, EAM/RbA scores)."""
    return build_mask2former(request, SWIN_B)


def build_uno_m2f_swin_t(request: ExportRequest) -> DeployModel:
    """Swin-T (window 7): Mask2Former model-zoo Cityscapes checkpoint (K+1, EAM/RbA scores)."""
    return build_mask2former(request, SWIN_T)


def build_uno_m2f_r50(request: ExportRequest) -> DeployModel:
    """ResNet-50: Open-set-M2F's and Mask2Former's R50 Cityscapes configs (K+1 or K+2)."""
    return build_mask2former(request, RESNET_50)


def build_uno_m2f_r101(request: ExportRequest) -> DeployModel:
    """ResNet-101: Open-set-M2F's and Mask2Former's R101 Cityscapes configs."""
    return build_mask2former(request, RESNET_101)
