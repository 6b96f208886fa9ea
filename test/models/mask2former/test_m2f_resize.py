"""detectron2's test resize inside the graph: PIL's pixels, then the official output order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_mask2former import tiny_model

from ood_perception.contract import (
    CITYSCAPES_CLASSES,
    IMAGENET_MEAN_255,
    IMAGENET_STD_255,
    ModelInfo,
)
from ood_perception.export.onnx import export_onnx
from ood_perception.models.deploy import DeployModel
from ood_perception.models.mask2former.model import Mask2Former, Mask2FormerScored
from ood_perception.models.mask2former.resize import PILBilinearResize, ShortestEdgeResize


def pil_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """What detectron2's `ResizeTransform.apply_image` does to a uint8 image."""
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def official_uno(model: Mask2Former, image: np.ndarray, resize: ShortestEdgeResize
                 ) -> np.ndarray:
    """Open-set-M2F's test path for one uint8 frame [H, W, 3], transcribed: PIL resize, pixel
    normalisation, zero padding to 32 (`ImageList`), mask logits up to the padded size, then
    `sem_seg_postprocess` (crop, bilinear to the frame size), then DenseOODDetectionEvaluatorUNO
    (sigmoid, -sum_q M_q (max_{k<K} P_q[k] - P_q[K]))."""
    height, width = image.shape[:2]
    new_h, new_w = resize.output_size(height, width)
    pixels = torch.from_numpy(pil_resize(image, (new_h, new_w)).copy()).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN_255).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD_255).view(3, 1, 1)
    x = ((pixels.float() - mean) / std)[None]
    padded = F.pad(x, (0, -new_w % 32, 0, -new_h % 32))
    with torch.no_grad():
        logits, masks = model.sem_seg_head(model.backbone(padded))
        masks = F.interpolate(masks, size=padded.shape[-2:], mode="bilinear",
                              align_corners=False)
        masks = F.interpolate(masks[:, :, :new_h, :new_w], size=(height, width),
                              mode="bilinear", align_corners=False)
    probs = logits[0].softmax(-1)
    per_query = -probs[:, -2] + probs[:, :-2].max(-1).values
    return (-(masks[0].sigmoid() * per_query[:, None, None]).sum(0)).numpy()


def resized_deploy(model: Mask2Former, size: tuple[int, int], resize: ShortestEdgeResize,
                   resize_back: str = "masks") -> DeployModel:
    info = ModelInfo(*size, model_name="uno-m2f-tiny", score_name="uno",
                     class_names=CITYSCAPES_CLASSES)
    scored = Mask2FormerScored(model, "uno", output_size=size, resize_back=resize_back)
    return DeployModel(scored, info, PILBilinearResize(size, resize.output_size(*size))).eval()


def test_output_size_is_resize_shortest_edge() -> None:
    resize = ShortestEdgeResize(1024, 2048)
    assert resize.output_size(180, 320) == (1024, 1820)
    assert resize.output_size(1080, 1920) == (1024, 1820)
    assert resize.output_size(1024, 2048) == (1024, 2048)
    assert resize.output_size(600, 2400) == (512, 2048)  # the long side is capped
    assert resize.output_size(1920, 1080) == (1820, 1024)


@pytest.mark.parametrize("size", [(90, 160), (1200, 1920), (376, 1241)])
def test_resize_gives_pils_pixels(size: tuple[int, int]) -> None:
    """Upscaling, antialiased downscaling and the long-side cap, bit for bit."""
    image = np.random.default_rng(sum(size)).integers(0, 256, (*size, 3), dtype=np.uint8)
    target = ShortestEdgeResize(1024, 2048).output_size(*size)
    with torch.no_grad():
        ours = PILBilinearResize(size, target)(torch.from_numpy(image).permute(2, 0, 1)[None]
                                               .float())
    assert np.array_equal(ours[0].permute(1, 2, 0).numpy().astype(np.uint8),
                          pil_resize(image, target))


def test_graph_reproduces_the_official_test_path(tmp_path: Path) -> None:
    """A frame resized in the graph (short side 64) and scored at its own size in ONNX
    Runtime equals the official order: the mask logits, not the score, are resized back."""
    resize = ShortestEdgeResize(64, 128)
    size = (30, 45)
    model = tiny_model(seed=2)
    deploy = resized_deploy(model, size, resize)
    path = export_onnx(deploy, tmp_path / "resized.onnx")
    images = np.random.default_rng(3).integers(0, 256, (2, *size, 3), dtype=np.uint8)
    expected = np.stack([official_uno(model, image, resize) for image in images])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores, semantic = session.run(None, {"image": images})
    assert scores.shape == semantic.shape == (2, *size) and semantic.dtype == np.uint8
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    with torch.no_grad():
        torch_semantic = deploy(torch.from_numpy(images))[1].numpy()
    assert (semantic == torch_semantic).mean() > 0.999
    with torch.no_grad():
        cheap = resized_deploy(model, size, resize, "score")(torch.from_numpy(images))[0]
    assert np.abs(cheap.numpy() - expected).max() > 1e-3  # not the official order


def test_builder_records_the_resize_and_the_deploy_file_keeps_it(tmp_path: Path) -> None:
    from detectron2_files import detectron2_state, save_pth

    from ood_perception.models.deploy_file import load_torch_deploy, save_torch_deploy
    from ood_perception.models.registry import ExportRequest, build_model

    path = save_pth(detectron2_state(tiny_swin_t_uno()), tmp_path / "uno.pth")
    request = ExportRequest(model="uno-m2f-swin-t", checkpoint=str(path),
                            input_size=(180, 320))
    deploy = build_model(request)
    resize = deploy.info.tiling["test_resize"]
    assert resize["network_size"] == [1024, 1820] and resize["resize_back"] == "masks"
    assert deploy.resize.output_size == (1024, 1820)
    reloaded = load_torch_deploy(save_torch_deploy(deploy, request, tmp_path / "m.pt"))
    assert reloaded.info == deploy.info and reloaded.resize.output_size == (1024, 1820)
    random_init = build_model(ExportRequest(model="uno-m2f-swin-t", random_init=True,
                                            input_size=(180, 320)))
    assert random_init.resize is None and random_init.info.tiling == {"mode": "single"}


def tiny_swin_t_uno() -> Mask2Former:
    """Swin-T UNO (K+2) with one masked-attention layer and 8 queries."""
    from ood_perception.models.backbones.swin import SWIN_T
    from ood_perception.models.mask2former.model import Mask2FormerConfig
    from ood_perception.models.mask2former.transformer_decoder import DecoderConfig

    torch.manual_seed(4)
    return Mask2Former(Mask2FormerConfig(backbone=SWIN_T, decoder=DecoderConfig(
        num_classes=20, num_queries=8, layers=1))).eval()


def test_resize_back_needs_the_test_resize() -> None:
    from ood_perception.errors import ConfigurationError
    from ood_perception.models.registry import ExportRequest, build_model

    with pytest.raises(ConfigurationError, match="--resize-back applies with"):
        build_model(ExportRequest(model="uno-m2f-swin-t", random_init=True,
                                  input_size=(64, 96), resize_back="score"))


@pytest.mark.slow
def test_swin_t_uno_exported_at_camera_size_scores_as_the_official_test_path(
        tmp_path: Path) -> None:
    """A Swin-T UNO checkpoint exported at 180x320 (the test resize is on by default with a
    checkpoint) runs the network at 1024x1820 and, in ONNX Runtime, scores as the official
    test path does on the same frame."""
    from detectron2_files import detectron2_state, save_pkl

    from ood_perception.cli.main import main
    from ood_perception.export.onnx import onnxruntime_scores

    model = tiny_swin_t_uno()
    checkpoint = save_pkl(detectron2_state(model), tmp_path / "uno_swin_t.pkl")
    output = tmp_path / "uno_180x320.onnx"
    assert main(["export", "--model", "uno-m2f-swin-t", "--checkpoint", str(checkpoint),
                 "--input-size", "180x320", "--output", str(output), "--no-check"]) == 0
    image = np.random.default_rng(6).integers(0, 256, (1, 180, 320, 3), dtype=np.uint8)
    expected = official_uno(model, image[0], ShortestEdgeResize(1024, 2048))
    scores = onnxruntime_scores(output, image)[0]
    assert np.abs(scores - expected).max() < 1e-4 * max(1.0, np.ptp(expected))
