"""Mask2Former: detectron2 names, padding, masked attention, builders and ONNX export."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ood_perception.cli.main import main
from ood_perception.contract import CITYSCAPES_CLASSES, INPUT_NAME, ModelInfo
from ood_perception.errors import ConfigurationError
from ood_perception.export.onnx import check_onnxruntime, export_onnx, sample_images
from ood_perception.models.backbones.swin import SWIN_L, SwinConfig
from ood_perception.models.deploy import DeployModel
from ood_perception.models.deploy_file import load_torch_deploy, save_torch_deploy
from ood_perception.models.mask2former.model import (
    Mask2Former,
    Mask2FormerConfig,
    Mask2FormerScored,
)
from ood_perception.models.mask2former.transformer_decoder import (
    DecoderConfig,
    MultiheadAttention,
    MultiScaleMaskedTransformerDecoder,
)
from ood_perception.models.registry import ExportRequest, build_model

SIZE = (70, 100)


def tiny_config(outputs: int = 21, queries: int = 5) -> Mask2FormerConfig:
    """Swin with 32 channels and window 4, 2 decoder layers, 1 encoder layer."""
    return Mask2FormerConfig(
        backbone=SwinConfig(32, (2, 2, 2, 2), (1, 2, 4, 8), 4),
        decoder=DecoderConfig(num_classes=outputs - 1, num_queries=queries, hidden_dim=32,
                              heads=4, ffn_dim=64, layers=2, mask_dim=32),
        conv_dim=32, enc_layers=1, enc_heads=4, enc_points=2, enc_ffn_dim=64)


def tiny_model(seed: int = 0, outputs: int = 21, queries: int = 5) -> Mask2Former:
    torch.manual_seed(seed)
    model = Mask2Former(tiny_config(outputs, queries)).eval()
    with torch.no_grad():  # spread the class logits so that scores differ across pixels
        model.sem_seg_head.predictor.class_embed.weight.mul_(20)
    return model


def test_outputs_are_at_input_size_and_padding_is_zero_bottom_right() -> None:
    model = tiny_model()
    x = torch.randn(2, 3, *SIZE)
    padded = F.pad(x, (0, 128 - SIZE[1], 0, 96 - SIZE[0]))
    with torch.no_grad():
        logits, masks = model(x)
        logits_p, masks_p = model(padded)
    assert logits.shape == (2, 5, 21) and masks.shape == (2, 5, *SIZE)
    torch.testing.assert_close(logits, logits_p)
    torch.testing.assert_close(masks, masks_p[:, :, :SIZE[0], :SIZE[1]])


def test_batch_items_are_independent() -> None:
    model = tiny_model()
    x = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        logits, masks = model(x)
        logits_1, masks_1 = model(x[1:2])
    torch.testing.assert_close(logits[1:2], logits_1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masks[1:2], masks_1, atol=1e-4, rtol=1e-4)


def test_parameter_names_follow_detectron2() -> None:
    keys = set(tiny_model().state_dict())
    pix, pred = "sem_seg_head.pixel_decoder.", "sem_seg_head.predictor."
    for key in ("backbone.patch_embed.proj.weight", "backbone.norm3.bias",
                "backbone.layers.0.blocks.1.attn.relative_position_index",
                "backbone.layers.2.downsample.reduction.weight",
                pix + "input_proj.2.1.weight", pix + "transformer.level_embed",
                pix + "transformer.encoder.layers.0.self_attn.sampling_offsets.bias",
                pix + "adapter_1.norm.weight", pix + "layer_1.weight",
                pix + "mask_features.bias",
                pred + "transformer_cross_attention_layers.1.multihead_attn.in_proj_weight",
                pred + "transformer_self_attention_layers.0.self_attn.out_proj.bias",
                pred + "transformer_ffn_layers.1.linear2.weight", pred + "query_feat.weight",
                pred + "level_embed.weight", pred + "mask_embed.layers.2.bias"):
        assert key in keys, key
    assert "sem_seg_head.pixel_decoder.adapter_1.bias" not in keys  # GN conv has no bias
    assert all(k.startswith(("backbone.", "sem_seg_head.pixel_decoder.",
                             "sem_seg_head.predictor.")) for k in keys)


def test_swin_l_uno_model_has_the_official_size() -> None:
    with torch.device("meta"):
        model = Mask2Former(Mask2FormerConfig(backbone=SWIN_L))
    params = sum(p.numel() for p in model.parameters())
    # Mask2Former Swin-L (200 queries, 134 classes on COCO) is 216 M; here 100 queries, 21.
    assert 214e6 < params < 217e6, params
    assert model.sem_seg_head.predictor.class_embed.weight.shape == (21, 256)
    assert len(model.sem_seg_head.predictor.transformer_ffn_layers) == 9
    assert len(model.sem_seg_head.pixel_decoder.transformer.encoder.layers) == 6


def test_multihead_attention_matches_torch() -> None:
    torch.manual_seed(0)
    ours = MultiheadAttention(16, 4)
    reference = torch.nn.MultiheadAttention(16, 4)
    reference.load_state_dict(ours.state_dict())
    q, k, v = torch.randn(5, 2, 16), torch.randn(7, 2, 16), torch.randn(7, 2, 16)
    mask = torch.rand(8, 5, 7) < 0.5
    mask[:, :, 0] = False
    expected = reference(q, k, v, attn_mask=mask)[0]
    torch.testing.assert_close(ours(q, k, v, mask), expected, atol=1e-5, rtol=1e-5)


def test_attention_mask_blocks_low_masks_and_frees_fully_blocked_rows() -> None:
    decoder = MultiScaleMaskedTransformerDecoder(DecoderConfig(num_queries=2, heads=2))
    masks = torch.full((1, 2, 4, 4), -5.0)
    masks[0, 0, :2] = 5.0  # query 0: top half; query 1: nothing
    blocked = decoder.attention_mask(masks, (2, 2))
    assert blocked.shape == (2, 2, 4)
    assert blocked[0, 0].tolist() == [False, False, True, True]
    assert blocked[:, 1].sum() == 0  # an all-blocked row attends everywhere
    torch.testing.assert_close(blocked[0], blocked[1])  # same mask for every head


def test_scored_network_is_the_official_evaluator_chain() -> None:
    model = tiny_model(seed=3)
    scored = Mask2FormerScored(model, "uno", known=19)
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        score, classes = scored(x)
        logits, masks = model(x)
    probs, mask_probs = logits[0].softmax(-1), masks[0].sigmoid()
    per_query = probs[:, -2] - probs[:, :-2].max(1).values
    expected = (mask_probs * per_query[:, None, None]).sum(0)
    sem_seg = torch.einsum("qc,qhw->chw", probs[:, :-1], mask_probs)[:19]
    torch.testing.assert_close(score[0], expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(classes[0], sem_seg.argmax(0))
    assert score.std() > 1e-3


def _tiny_deploy(score: str) -> DeployModel:
    info = ModelInfo(*SIZE, model_name="uno-m2f-tiny", score_name=score,
                     class_names=CITYSCAPES_CLASSES, tiling={"mode": "single"})
    return DeployModel(Mask2FormerScored(tiny_model(seed=1), score), info).eval()


def test_onnxruntime_matches_torch(tmp_path: Path) -> None:
    """RbA here; UNO's graph is checked against the official test path in test_m2f_resize."""
    import onnxruntime as ort

    deploy = _tiny_deploy("rba")
    path = export_onnx(deploy, tmp_path / "m2f.onnx")
    images = sample_images(deploy.info, batch=3, seed=4)
    assert check_onnxruntime(path, deploy, images) < 1e-3
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _, semantic = session.run(None, {INPUT_NAME: images})
    with torch.no_grad():
        expected = deploy(torch.from_numpy(images))[1].numpy()
    assert (semantic == expected).mean() > 0.999
    props = session.get_modelmeta().custom_metadata_map
    assert props["score_name"] == "rba" and props["tiling"] == '{"mode": "single"}'


def test_registry_builds_random_swin_t() -> None:
    deploy = build_model(ExportRequest(model="uno-m2f-swin-t", random_init=True,
                                       input_size=(64, 96), seed=2))
    info = deploy.info
    assert (info.model_name, info.score_name, info.tiling) == ("uno-m2f-swin-t", "uno",
                                                                {"mode": "single"})
    assert info.class_names == CITYSCAPES_CLASSES and info.input_size == (64, 96)
    assert info.mean == (123.675, 116.28, 103.53) and info.std == (58.395, 57.12, 57.375)
    image = torch.randint(0, 256, (2, 64, 96, 3), dtype=torch.uint8)
    with torch.no_grad():
        score, semantic = deploy(image)
    assert score.shape == (2, 64, 96) and score.dtype == torch.float32
    assert semantic.dtype == torch.uint8 and int(semantic.max()) < 19


def test_torch_deploy_file_round_trip(tmp_path: Path) -> None:
    request = ExportRequest(model="uno-m2f-swin-t", random_init=True, score="eam",
                            input_size=(64, 96), seed=4)
    deploy = build_model(request)
    loaded = load_torch_deploy(save_torch_deploy(deploy, request, tmp_path / "m.pt"))
    image = torch.randint(0, 256, (1, 64, 96, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(loaded(image)[0], deploy(image)[0])
    assert loaded.info == deploy.info


@pytest.mark.parametrize(("fields", "message"), [
    ({}, "exactly one of --checkpoint"),
    ({"random_init": True, "window": (64, 64)}, "--window"),
    ({"random_init": True, "variant": "dd"}, "variant must be one of uno, closed"),
    ({"random_init": True, "score": "llr"}, "unknown Mask2Former score"),
])
def test_builder_rejects_what_does_not_apply(fields: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build_model(ExportRequest(model="uno-m2f-swin-l", input_size=(64, 64), **fields))


@pytest.mark.slow
def test_full_swin_l_export_runs_in_onnxruntime(tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    """The shipped configuration: Swin-L UNO at 1024x2048 through the CLI (minutes on CPU)."""
    output = tmp_path / "m.onnx"
    start = time.perf_counter()
    code = main(["export", "--model", "uno-m2f-swin-l", "--random-init", "--score", "uno",
                 "--input-size", "1024x2048", "--output", str(output)])
    out = capsys.readouterr().out
    print(out, f"total {time.perf_counter() - start:.0f} s")
    assert code == 0 and output.is_file()
    diff = float(out.split("max |score diff| = ")[1].split()[0])
    assert np.isfinite(diff) and diff < 1e-3
