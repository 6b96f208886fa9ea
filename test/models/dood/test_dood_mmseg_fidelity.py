"""The DOoD segmentors equal mmsegmentation 1.2.2 (+ the DOoD repository's two overrides).

Random weights everywhere, tiny sizes, an input that is not a multiple of the patch size
(corner padding, pos-embed resizing). The references are mmseg's own `EncoderDecoder`,
`VisionTransformer`, `SegmenterMaskTransformerHead` and `SETRUPHead`, plus transcriptions of
lmb-freiburg/diffusion-for-ood's `DistilledVisionTransformer` and its Segmenter head forward
(untransposed projections) and of its key probe (a hook on the last attention's input).
mmcv-lite has no compiled ops; mmseg imports a few at module level, so `mmcv.ops` is stubbed.
"""

from __future__ import annotations

import sys
import types

import mmcv  # noqa: F401  (the package, before its ops are stubbed)
import pytest
import torch
import torch.nn.functional as F

from ood_perception.models.backbones.mmseg_vit import MMSegVisionTransformer, MMSegViTConfig
from ood_perception.models.dood.checkpoints import convert_mmseg_segmentor_state
from ood_perception.models.dood.network import MMSegSegmentor
from ood_perception.models.dood.segmenter_head import SegmenterMaskHead
from ood_perception.models.dood.setr_head import SETRUpHead
from ood_perception.models.loading import load_strict


class _NoOps(types.ModuleType):
    """`mmcv.ops` of mmcv-lite: any name is a placeholder class (none is used here)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {})


sys.modules.setdefault("mmcv.ops", _NoOps("mmcv.ops"))

from mmengine.config import ConfigDict  # noqa: E402
from mmseg.models.backbones.vit import VisionTransformer  # noqa: E402
from mmseg.models.decode_heads.segmenter_mask_head import (  # noqa: E402
    SegmenterMaskTransformerHead,
)
from mmseg.models.segmentors import EncoderDecoder  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402

DIM, HEADS, CLASSES = 64, 2, 5
INPUT = (72, 100)  # not a multiple of 16: 5x7 patch grid after corner padding
LN = dict(type="LN", eps=1e-6, requires_grad=True)


class DistilledViT(VisionTransformer):
    """Transcription of the DOoD repository's `DistilledVisionTransformer` (cls + dist
    tokens, pos-embed of the training grid resized with `interpolate_mode` every call)."""

    def __init__(self, **kwargs):
        super().__init__(patch_bias=True, **kwargs)
        dim = self.cls_token.shape[-1]
        self.dist_token = torch.nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = torch.nn.Parameter(torch.zeros(1, self.pos_embed.shape[1] + 1, dim))
        self.grid = (self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size)

    def forward(self, inputs):
        x, hw = self.patch_embed(inputs)
        b = x.shape[0]
        x = torch.cat((self.cls_token.expand(b, -1, -1), self.dist_token.expand(b, -1, -1), x), 1)
        grid = self.pos_embed[0, 2:].reshape(1, *self.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=hw, mode=self.interpolate_mode)
        x = x + torch.cat((self.pos_embed[:, :2], grid.permute(0, 2, 3, 1).reshape(1, -1,
                                                                                   x.shape[2])), 1)
        for layer in self.layers:
            x = layer(x)
        x = self.norm1(x)[:, 2:]
        return (x.reshape(b, *hw, -1).permute(0, 3, 1, 2),)


class DOoDSegmenterHead(SegmenterMaskTransformerHead):
    """Transcription of the DOoD repository's head forward: projections NOT transposed."""

    def forward(self, inputs):
        x = inputs[-1]
        b, c, h, w = x.shape
        x = self.dec_proj(x.permute(0, 2, 3, 1).reshape(b, -1, c))
        x = torch.cat((x, self.cls_emb.expand(b, -1, -1)), 1)
        for layer in self.layers:
            x = layer(x)
        x = self.decoder_norm(x)
        patches = F.normalize(x[:, :-self.num_classes] @ self.patch_proj.weight, dim=2)
        classes = F.normalize(x[:, -self.num_classes:] @ self.classes_proj.weight, dim=2)
        masks = self.mask_norm(patches @ classes.transpose(1, 2))
        return masks.permute(0, 2, 1).reshape(b, -1, h, w)


MODELS.register_module(name="TestDistilledViT", module=DistilledViT, force=True)
MODELS.register_module(name="TestDOoDSegmenterHead", module=DOoDSegmenterHead, force=True)


def segmenter_reference() -> EncoderDecoder:
    return EncoderDecoder(
        backbone=dict(type="TestDistilledViT", img_size=(64, 64), patch_size=16,
                      embed_dims=DIM, num_layers=2, num_heads=HEADS, final_norm=True,
                      norm_cfg=LN, with_cls_token=True, interpolate_mode="bicubic"),
        decode_head=dict(type="TestDOoDSegmenterHead", in_channels=DIM, channels=DIM,
                         num_classes=CLASSES, num_layers=1, num_heads=HEADS, embed_dims=DIM,
                         dropout_ratio=0.0),
        test_cfg=ConfigDict(mode="whole"))


def setr_reference() -> EncoderDecoder:
    head = dict(type="SETRUPHead", in_channels=DIM, channels=32, num_classes=CLASSES,
                dropout_ratio=0, norm_cfg=dict(type="BN", requires_grad=True), num_convs=1,
                up_scale=4, kernel_size=1, align_corners=False)
    return EncoderDecoder(
        backbone=dict(type="VisionTransformer", img_size=(64, 64), patch_size=16,
                      patch_bias=True, embed_dims=DIM, num_layers=3, num_heads=HEADS,
                      out_indices=(0, 1, 2), norm_cfg=LN, with_cls_token=True,
                      interpolate_mode="bilinear"),
        decode_head={**head, "in_index": 2},
        auxiliary_head=[{**head, "in_index": 0}, {**head, "in_index": 1}],
        test_cfg=ConfigDict(mode="whole"))


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every float tensor random (LayerNorm and BatchNorm statistics included)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.3)
    return model.eval()


def reference_keys(model: EncoderDecoder, x: torch.Tensor, extra: int) -> torch.Tensor:
    """The DOoD key probe: k = in_proj rows C..2C applied to the last attention's key input
    (mmcv passes it sequence-first), extra tokens dropped -> [B, N, C]."""
    seen = {}

    def probe(module, args, kwargs) -> None:
        seen["key"] = kwargs["key"]

    attn = model.backbone.layers[-1].attn.attn
    handle = attn.register_forward_pre_hook(probe, with_kwargs=True)
    with torch.no_grad():
        model.backbone(x)
    handle.remove()
    w, b = attn.in_proj_weight, attn.in_proj_bias
    keys = F.linear(seen["key"], w[DIM:2 * DIM], b[DIM:2 * DIM])
    return keys[extra:].transpose(0, 1)


def ours(cfg: MMSegViTConfig, head: torch.nn.Module, official: dict) -> MMSegSegmentor:
    segmentor = MMSegSegmentor(MMSegVisionTransformer(cfg, INPUT), head)
    load_strict(segmentor, convert_mmseg_segmentor_state(official), "mmseg reference")
    return segmentor.eval()


def check(reference: EncoderDecoder, segmentor: MMSegSegmentor, extra: int) -> None:
    x = torch.randn(2, 3, *INPUT, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = torch.stack([s.seg_logits.data for s in reference.predict(x)])
        logits, keys = segmentor(x)
        logits = F.interpolate(logits, size=INPUT, mode="bilinear", align_corners=False)
    assert segmentor.grid == (5, 7)
    assert expected.shape == logits.shape == (2, CLASSES, *INPUT)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(keys, reference_keys(reference, x, extra), atol=1e-5, rtol=1e-5)


def test_segmenter_matches_mmseg_with_the_dood_overrides() -> None:
    reference = randomize(segmenter_reference(), seed=1)
    official = reference.state_dict()
    assert "backbone.dist_token" in official and "backbone.ln1.weight" in official
    assert "decode_head.layers.0.attn.attn.in_proj_weight" in official
    cfg = MMSegViTConfig(embed_dim=DIM, depth=2, num_heads=HEADS, pos_grid=(4, 4),
                         extra_tokens=2, final_norm=True, interpolate_mode="bicubic")
    head = SegmenterMaskHead(DIM, DIM, num_layers=1, num_heads=HEADS, num_classes=CLASSES)
    check(reference, ours(cfg, head, official), extra=2)


def test_segmenter_head_really_differs_from_mmseg_s_transposed_one() -> None:
    reference = randomize(segmenter_reference(), seed=2)
    head = reference.decode_head
    feats = torch.randn(1, DIM, 3, 4)
    with torch.no_grad():
        dood = head([feats])
        plain = SegmenterMaskTransformerHead.forward(head, [feats])
    assert (dood - plain).abs().max() > 1e-2


def test_setr_matches_mmseg_and_drops_the_auxiliary_heads_by_name() -> None:
    reference = randomize(setr_reference(), seed=3)
    official = reference.state_dict()
    assert any(k.startswith("auxiliary_head.1.") for k in official)
    assert "decode_head.up_convs.0.0.bn.running_var" in official
    cfg = MMSegViTConfig(embed_dim=DIM, depth=3, num_heads=HEADS, pos_grid=(4, 4))
    head = SETRUpHead(DIM, 32, num_classes=CLASSES, num_convs=1, up_scale=4, kernel_size=1)
    check(reference, ours(cfg, head, official), extra=1)


def official_config_model(name: str) -> EncoderDecoder:
    """The released models' segmentor configs (configs/models/*.py of the DOoD repository),
    SyncBN as BN on CPU."""
    ln = dict(type="LN", eps=1e-6, requires_grad=True)
    if name == "dood-segmenter-b":
        return EncoderDecoder(
            backbone=dict(type="TestDistilledViT", img_size=(768, 768), patch_size=16,
                          embed_dims=768, num_layers=12, num_heads=12, final_norm=True,
                          norm_cfg=ln, with_cls_token=True, interpolate_mode="bicubic"),
            decode_head=dict(type="TestDOoDSegmenterHead", in_channels=768, channels=768,
                             num_classes=19, num_layers=1, num_heads=6, embed_dims=768,
                             dropout_ratio=0.0),
            test_cfg=ConfigDict(mode="whole"))
    size, classes = ((768, 768), 19) if name == "dood-setr-l" else ((512, 512), 150)
    head = dict(type="SETRUPHead", in_channels=1024, channels=256, num_classes=classes,
                dropout_ratio=0, norm_cfg=dict(type="BN", requires_grad=True), num_convs=1,
                up_scale=4, kernel_size=1, align_corners=False)
    aux = [{**head, "in_index": i, "num_convs": 1 if name == "dood-setr-l" else 2}
           for i in range(3)]
    return EncoderDecoder(
        backbone=dict(type="VisionTransformer", img_size=size, patch_size=16, patch_bias=True,
                      embed_dims=1024, num_layers=24, num_heads=16, out_indices=(9, 14, 19, 23),
                      norm_cfg=ln, with_cls_token=True, interpolate_mode="bilinear"),
        decode_head={**head, "in_index": 3}, auxiliary_head=aux, test_cfg=ConfigDict(mode="whole"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dood-segmenter-b", "dood-setr-l", "dood-setr-l-ade20k"])
def test_released_segmentor_layouts_load_strictly(name: str) -> None:
    """Every key and shape of the released configs' state dicts has its place here."""
    from ood_perception.models.registry import ExportRequest, build_model

    official = official_config_model(name).state_dict()
    deploy = build_model(ExportRequest(model=name, random_init=True, input_size=(64, 128),
                                       timesteps=1, score="logsumexp"))
    load_strict(deploy.network.coverage.network.segmentor,
                convert_mmseg_segmentor_state(official), name)
