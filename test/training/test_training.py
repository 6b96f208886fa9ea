"""Two-stage training on tiny configurations: losses fall, checkpoints load like official ones."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from uem_tiny import official_segmentor_state

from ood_perception.cli.main import COMMANDS, main
from ood_perception.models.backbones.dinov2 import ViTConfig
from ood_perception.models.registry import ExportRequest, build_model
from ood_perception.models.uem.build import build_uem
from ood_perception.models.uem.checkpoints import (
    load_state_dict,
    save_lightning_checkpoint,
)
from ood_perception.models.uem.network import VARIANTS, UEMConfig
from ood_perception.synthetic.scenes import SceneConfig, make_scene, write_frames
from ood_perception.training import data as training_data
from ood_perception.training import uem as training
from ood_perception.training import validation as training_eval
from ood_perception.training.negatives import SyntheticNegatives

WINDOW = (56, 112)


def tiny(variant: str = "dd") -> UEMConfig:
    seg, uem = VARIANTS[variant]
    return UEMConfig(vit=ViTConfig(embed_dim=32, depth=4, num_heads=2, pos_grid=4),
                     layers=(0, 1, 2, 3), fpn_dim=16, dino_mlp_hidden=24, segmentor_head=seg,
                     projector_hidden=24, projector_dim=16, uem_head=uem, gmm_components=2)


@pytest.fixture(scope="module")
def scenes():
    return training_data.synthetic_samples(6, seed=3, size=WINDOW, progress=False)


@pytest.fixture(autouse=True)
def training_commands(monkeypatch):
    """The commands as cli.COMMANDS registers them."""
    for name, module in (("train-segmentor", "train_segmentor"), ("train-uem", "train_uem"),
                         ("make-scenes", "make_scenes")):
        monkeypatch.setitem(COMMANDS, name, (module, name))


def _fell(losses: list[float]) -> bool:
    return np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])


@pytest.mark.parametrize("variant", ["dd", "gd"])
def test_segmentor_steps_reduce_the_loss(scenes, variant, tmp_path) -> None:
    network = training.build_network(tiny(variant), WINDOW, seed=0)
    optim = training.OptimConfig(steps=30, batch_size=3, lr=3e-3, warmup=3, seed=0)
    result, trainer = training.train_segmentor(network, scenes, optim, progress=False)
    assert len(result.losses) == 30 and _fell(result.losses), result.losses
    path = training.save_segmentor_checkpoint(network, tmp_path / "seg.ckpt", {"x": 1}, trainer)
    state = load_state_dict(path)
    assert all(k.startswith(("backbone.dinov2.", "backbone.learnable_layers.",
                             "segmentation_head.")) for k in state)
    if variant == "gd":  # the official GMM training buffers, filled by training
        assert state["segmentation_head.queue"].shape == (19 * 2, 16, 8000)
        assert state["segmentation_head.iteration_counter"].item() == 30
        assert int(state["segmentation_head.queue_ptr"].max()) > 0


def test_frozen_backbone_keeps_its_weights(scenes, tmp_path) -> None:
    donor = training.build_network(tiny(), WINDOW, seed=5)
    backbone = tmp_path / "dinov2.pth"
    torch.save(donor.segmentor.backbone.dinov2.state_dict(), backbone)
    network = training.build_network(tiny(), WINDOW, seed=0, backbone_checkpoint=backbone)
    before = {k: v.clone() for k, v in network.segmentor.backbone.dinov2.state_dict().items()}
    training.train_segmentor(network, scenes, training.OptimConfig(steps=3, batch_size=2),
                             freeze_backbone=True, progress=False)
    for key, value in network.segmentor.backbone.dinov2.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def _official_segmentor(path: Path, variant: str, seed: int = 0) -> training.UEMNetwork:
    network = training.build_network(tiny(variant), WINDOW, seed=seed)
    save_lightning_checkpoint(official_segmentor_state(network.segmentor), path,
                              {"MODEL": {"NAME": "tiny"}})
    return network


@pytest.mark.parametrize("variant", ["dd", "gg"])
def test_uem_steps_reduce_the_loss_with_the_segmentor_frozen(scenes, variant, tmp_path) -> None:
    segmentor_ckpt = tmp_path / "segmentor.ckpt"
    _official_segmentor(segmentor_ckpt, variant)
    network = training.build_network(tiny(variant), WINDOW, seed=1)
    raw = training.load_segmentor(network, segmentor_ckpt)
    frozen = {k: v.clone() for k, v in network.segmentor.state_dict().items()}
    optim = training.OptimConfig(steps=30, batch_size=3, lr=3e-3, warmup=3, seed=0)
    result, trainer = training.train_uem(network, scenes, SyntheticNegatives("train"), optim,
                                         paste_prob=1.0, progress=False)
    assert _fell(result.losses), result.losses
    for key, value in network.segmentor.state_dict().items():
        torch.testing.assert_close(value, frozen[key], rtol=0, atol=0)
    path = training.save_uem_checkpoint(network, raw, tmp_path / "uem.ckpt", {"x": 1}, trainer)
    # the export path reads it, strictly, and reproduces the trained network's LLR
    request = ExportRequest(model="uem-tiny", checkpoint=str(path), input_size=WINDOW,
                            window=WINDOW, single_window=True)
    deploy = build_uem(request, tiny(variant))
    frame = make_scene(11, SceneConfig(height=WINDOW[0], width=WINDOW[1]), "heldout")
    with torch.no_grad():
        exported = deploy(torch.from_numpy(frame.rgb[None]))[0].numpy()
    reference, _ = training_eval.predict(network, frame.rgb[None])
    np.testing.assert_allclose(exported, reference, rtol=1e-4, atol=1e-4)
    if variant == "gg":
        state = load_state_dict(path)
        assert state["ood_head.queue"].shape == (2 * 2, 16, 8000)
        assert "segmentor.segmentation_head.queue" in state  # the segmentor's own buffers


def test_a_uem_checkpoint_serves_as_the_frozen_segmentor(tmp_path) -> None:
    """Retraining a shipped UEM's head needs no separate stage-1 file."""
    donor = _official_segmentor(tmp_path / "segmentor.ckpt", "dd", seed=4)
    raw = training.load_segmentor(training.build_network(tiny(), WINDOW, seed=1),
                                  tmp_path / "segmentor.ckpt")
    uem_ckpt = training.save_uem_checkpoint(donor, raw, tmp_path / "uem.ckpt", {"x": 1})
    network = training.build_network(tiny(), WINDOW, seed=2)
    training.load_segmentor(network, uem_ckpt)
    for key, value in network.segmentor.state_dict().items():
        torch.testing.assert_close(value, donor.segmentor.state_dict()[key], rtol=0, atol=0)


def test_llr_loss_is_bce_on_eq_11() -> None:
    seg = torch.tensor([[[[2.0, 0.0]], [[1.0, 3.0]]]])  # K=2, 1x2
    uem = torch.tensor([[[[0.5, 0.0]], [[1.5, 4.0]]]])
    target = torch.tensor([[[0, 1]]])
    score = torch.tensor([1.5 - 0.5 - 2.0, 4.0 - 0.0 - 3.0])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(score, torch.tensor([0., 1.]))
    torch.testing.assert_close(training.llr_loss(seg, uem, target), expected)
    ignored = torch.tensor([[[255, 1]]])
    torch.testing.assert_close(
        training.llr_loss(seg, uem, ignored),
        torch.nn.functional.binary_cross_entropy_with_logits(score[1:], torch.tensor([1.])))


def test_evaluate_reports_ap_fpr_and_miou(scenes) -> None:
    network = training.build_network(tiny(), WINDOW, seed=0)
    frames = training_data.validation_frames(3, WINDOW)
    result = training_eval.evaluate(training_eval.network_predictor(network), frames, batch_size=2)
    assert 0.0 <= result.ap <= 1.0 and 0.0 <= result.fpr95 <= 1.0
    assert 0.0 <= result.miou <= 1.0 and result.frames == 3
    assert set(result.class_iou) <= set(range(19)) and 0 in result.class_iou


def _folder_dataset(root: Path) -> None:
    frames = [make_scene(40 + i, SceneConfig(height=WINDOW[0] * 2, width=WINDOW[1] * 2))
              for i in range(3)]
    write_frames(root, frames)


def _cutouts(root: Path) -> None:
    root.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        rgba = np.zeros((30, 20, 4), np.uint8)
        rgba[..., :3] = rng.integers(0, 255, 3)
        cv2.circle(rgba, (10, 15), 9, (0, 0, 0, 255), -1)
        rgba[..., :3] = np.where(rgba[..., 3:] > 0, rng.integers(0, 255, 3), 0)
        cv2.imwrite(str(root / f"object_{index}.png"), rgba)


def test_cli_trains_both_stages_on_image_folders(tmp_path) -> None:
    """train-segmentor on images + train-id labels, train-uem on plain images + cut-outs,
    over the real demo architecture at a tiny window; export then loads the checkpoints."""
    data = tmp_path / "data"
    _folder_dataset(data)
    _cutouts(tmp_path / "cutouts")
    seg = tmp_path / "seg.ckpt"
    uem = tmp_path / "uem.ckpt"
    common = ["--window", f"{WINDOW[0]}x{WINDOW[1]}", "--steps", "2", "--batch-size", "2",
              "--no-progress", "--min-scale", "0.8", "--max-scale", "1.2"]
    assert main(["train-segmentor", "--output", str(seg), "--images", str(data / "images"),
                 "--labels", str(data / "semantic"), *common]) == 0
    assert main(["train-uem", "--segmentor-checkpoint", str(seg), "--output", str(uem),
                 "--images", str(data / "images"), "--negatives", str(tmp_path / "cutouts"),
                 "--metrics-json", str(tmp_path / "m.json"), "--val", "2", *common]) == 0
    assert (tmp_path / "m.json").is_file()
    for segmentor in (None, str(seg)):
        deploy = build_model(ExportRequest(model="uem-demo", checkpoint=str(uem),
                                           segmentor_checkpoint=segmentor, input_size=WINDOW,
                                           window=WINDOW))
        assert deploy.info.input_size == WINDOW


def test_cli_renders_synthetic_scenes_at_the_camera_size(tmp_path) -> None:
    """--scene-size renders the scenes (training and held-out) smaller than the window, as a
    camera feeding a larger network window would; the checkpoint records it."""
    seg = tmp_path / "seg.ckpt"
    metrics = tmp_path / "m.json"
    assert main(["train-segmentor", "--output", str(seg), "--synthetic", "2", "--window",
                 "84x168", "--scene-size", "56x112", "--steps", "1", "--batch-size", "1",
                 "--val", "1", "--metrics-json", str(metrics), "--no-progress"]) == 0
    hyper = torch.load(seg, weights_only=True)["hyper_parameters"]
    assert hyper["DATA"]["SCENE_SIZE"] == [56, 112] and hyper["MODEL"]["WINDOW"] == [84, 168]
    assert json.loads(metrics.read_text())["val_frames"] == 1


def test_cli_errors_say_what_to_fix(tmp_path, capsys) -> None:
    assert main(["train-segmentor", "--output", str(tmp_path / "s.ckpt"), "--images",
                 str(tmp_path)]) == 2
    assert "--labels" in capsys.readouterr().err
    assert main(["train-uem", "--segmentor-checkpoint", str(tmp_path / "none.ckpt"),
                 "--output", str(tmp_path / "u.ckpt"), "--synthetic", "1"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["train-segmentor", "--output", str(tmp_path / "s.ckpt"), "--window",
                 "50x100"]) == 2
    assert "multiple of the patch size" in capsys.readouterr().err


def test_labels_outside_the_train_ids_are_named(tmp_path, capsys) -> None:
    """Cityscapes labelIds (up to 33) instead of labelTrainIds would crash the loss."""
    data = tmp_path / "data"
    _folder_dataset(data)
    label = sorted((data / "semantic").iterdir())[0]
    cv2.imwrite(str(label), np.full_like(cv2.imread(str(label), cv2.IMREAD_UNCHANGED), 30))
    assert main(["train-segmentor", "--output", str(tmp_path / "s.ckpt"), "--images",
                 str(data / "images"), "--labels", str(data / "semantic"), "--window",
                 f"{WINDOW[0]}x{WINDOW[1]}", "--steps", "2", "--batch-size", "3",
                 "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert label.name in error and "[30]" in error and "labelTrainIds" in error


@pytest.mark.slow
def test_train_uem_on_a_real_size_dinov2_b_segmentor(tmp_path) -> None:
    """ViT-B/14 with registers, official layout, a folder of images: two steps on CPU."""
    from ood_perception.models.uem.network import UEMNetwork, uem_config

    window = (224, 224)
    segmentor = UEMNetwork(uem_config("b", "dd"), window).segmentor
    seg = save_lightning_checkpoint(official_segmentor_state(segmentor), tmp_path / "seg.ckpt")
    data = tmp_path / "data"
    _folder_dataset(data)
    uem = tmp_path / "uem.ckpt"
    assert main(["train-uem", "--model", "uem-dinov2-b", "--segmentor-checkpoint", str(seg),
                 "--output", str(uem), "--images", str(data / "images"), "--window", "224x224",
                 "--steps", "2", "--batch-size", "1", "--no-progress"]) == 0
    state = load_state_dict(uem)
    assert state["ood_projector._layers.0.weight"].shape == (512, 768)
    build_model(ExportRequest(model="uem-dinov2-b", checkpoint=str(uem),
                              segmentor_checkpoint=str(seg), input_size=window, window=window))
