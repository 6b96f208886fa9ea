"""detectron2-layout checkpoints (.pth, .pkl) load, reproduce their model and fail loudly."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2_files import detectron2_state, save_pkl, save_pth
from test_mask2former import SIZE, tiny_config, tiny_model

from ood_perception.errors import CheckpointError, ConfigurationError
from ood_perception.models.backbones.swin import SWIN_T
from ood_perception.models.mask2former.build import RESNET_50, build_uno_m2f_swin_t
from ood_perception.models.mask2former.checkpoints import (
    decoder_layers,
    head_sizes,
    load_m2f_state,
    load_strict,
)
from ood_perception.models.mask2former.model import (
    Mask2Former,
    Mask2FormerConfig,
    Mask2FormerScored,
)
from ood_perception.models.mask2former.transformer_decoder import DecoderConfig
from ood_perception.models.registry import ExportRequest, build_model

RAN: list[str] = []


def record(*args: object) -> None:
    RAN.append("ran")


class Payload:
    """Pickles to a call of `record`: a loader that ran it would execute file content."""

    def __reduce__(self):
        return record, ("pwned",)


def outputs(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_checkpoint_reproduces_its_model(tmp_path: Path, suffix: str) -> None:
    source = tiny_model(seed=1)
    state = detectron2_state(source)
    assert "criterion.empty_weight" in state
    path = (save_pth if suffix == ".pth" else save_pkl)(state, tmp_path / f"model{suffix}")
    loaded = load_m2f_state(path)
    assert "criterion.empty_weight" not in loaded
    assert head_sizes(loaded, str(path)) == (21, 5)
    torch.manual_seed(99)
    target = Mask2Former(tiny_config()).eval()
    load_strict(target, loaded, str(path))
    for a, b in zip(outputs(target), outputs(source), strict=True):
        assert torch.equal(a, b)


def test_numpy_1_pickles_load(tmp_path: Path) -> None:
    """Protocol 2 with numpy.core names, as older detectron2 files are written."""
    arrays = {"model": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    data = pickle.dumps(arrays, protocol=2).replace(b"numpy._core.multiarray",
                                                     b"numpy.core.multiarray")
    path = tmp_path / "old.pkl"
    path.write_bytes(data)
    assert torch.equal(load_m2f_state(path)["w"], torch.arange(6.0).reshape(2, 3))


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_pickled_code_is_refused_not_run(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"evil{suffix}"
    payload = {"model": {"w": np.zeros(2, dtype=np.float32)}, "extra": Payload()}
    if suffix == ".pth":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(CheckpointError, match="not a readable detectron2 checkpoint"):
        load_m2f_state(path)
    assert RAN == []


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path: Path) -> None:
    model = tiny_model()
    state = detectron2_state(model)
    del state["sem_seg_head.predictor.query_embed.weight"]
    state["sem_seg_head.predictor.extra.weight"] = torch.zeros(1)
    state["backbone.norm0.weight"] = torch.zeros(7)
    loaded = load_m2f_state(save_pth(state, tmp_path / "bad.pth"))
    with pytest.raises(CheckpointError) as info:
        load_strict(Mask2Former(tiny_config()), loaded, "bad.pth")
    message = str(info.value)
    assert "missing (1): sem_seg_head.predictor.query_embed.weight" in message
    assert "unexpected (1): sem_seg_head.predictor.extra.weight" in message
    assert "backbone.norm0.weight (7,) != (32,)" in message


def test_normalisation_buffers_are_checked_then_dropped(tmp_path: Path) -> None:
    model = tiny_model()
    state = detectron2_state(model)
    state["pixel_mean"] = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    state["pixel_std"] = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    load_strict(Mask2Former(tiny_config()), state, "ok")
    state["pixel_std"] = torch.ones(3, 1, 1)
    with pytest.raises(CheckpointError, match="pixel_std"):
        load_strict(Mask2Former(tiny_config()), state, "bgr")


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_m2f_state(tmp_path / "absent.pkl")
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": [1, 2]}}, protocol=4))
    with pytest.raises(CheckpointError, match="not an array"):
        load_m2f_state(path)
    with pytest.raises(CheckpointError, match="not a Mask2Former checkpoint"):
        head_sizes({"w": torch.zeros(1)}, "x.pth")


def test_builder_reads_a_closed_set_swin_t_checkpoint(tmp_path: Path) -> None:
    """A K+1 model-zoo .pkl: head size and query count come from the file; UNO is refused."""
    torch.manual_seed(5)
    source = Mask2Former(Mask2FormerConfig(
        backbone=SWIN_T, decoder=DecoderConfig(num_classes=19, num_queries=12))).eval()
    path = save_pkl(detectron2_state(source), tmp_path / "model_final.pkl")
    request = ExportRequest(model="uno-m2f-swin-t", checkpoint=str(path), score="eam",
                            input_size=(64, 96), test_resize=False)
    deploy = build_uno_m2f_swin_t(request)
    image = torch.randint(0, 256, (1, 64, 96, 3), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(1))
    reference = Mask2FormerScored(source, "eam")
    x = (image.permute(0, 3, 1, 2).float() - deploy.mean) * deploy.inv_std
    with torch.no_grad():
        torch.testing.assert_close(deploy(image)[0], reference(x)[0])
    assert deploy.variant == "closed"
    with pytest.raises(ConfigurationError, match="K\\+2"):
        build_uno_m2f_swin_t(ExportRequest(model="uno-m2f-swin-t", checkpoint=str(path),
                                           input_size=(64, 96)))
    with pytest.raises(ConfigurationError, match="not the 'uno' head"):
        build_uno_m2f_swin_t(ExportRequest(model="uno-m2f-swin-t", checkpoint=str(path),
                                           variant="uno", input_size=(64, 96)))


def test_a_single_decoder_layer_checkpoint_as_rba_ships_loads(tmp_path: Path) -> None:
    """RbA's checkpoints (DEC_LAYERS 2) have one masked-attention layer; the depth comes from
    the file and survives the `.pt` deploy round trip."""
    from ood_perception.models.deploy_file import load_torch_deploy, save_torch_deploy

    torch.manual_seed(6)
    source = Mask2Former(Mask2FormerConfig(backbone=SWIN_T, decoder=DecoderConfig(
        num_classes=19, num_queries=8, layers=1))).eval()
    state = detectron2_state(source)
    assert decoder_layers(state) == 1
    path = save_pkl(state, tmp_path / "rba_1dl.pkl")
    request = ExportRequest(model="uno-m2f-swin-t", checkpoint=str(path), score="rba",
                            input_size=(64, 96), test_resize=False)
    deploy = build_uno_m2f_swin_t(request)
    image = torch.randint(0, 256, (1, 64, 96, 3), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(2))
    x = (image.permute(0, 3, 1, 2).float() - deploy.mean) * deploy.inv_std
    with torch.no_grad():
        torch.testing.assert_close(deploy(image)[0], Mask2FormerScored(source, "rba")(x)[0])
        reloaded = load_torch_deploy(save_torch_deploy(deploy, request, tmp_path / "d.pt"))
        torch.testing.assert_close(reloaded(image)[0], deploy(image)[0])
    with pytest.raises(ConfigurationError, match="has 1 decoder layers, not 9"):
        build_uno_m2f_swin_t(ExportRequest(model="uno-m2f-swin-t", checkpoint=str(path),
                                           score="rba", input_size=(64, 96), decoder_layers=9))


def r50_uno(seed: int = 8) -> Mask2Former:
    """Open-set-M2F's R50 UNO layout (K+2 head) with one masked-attention layer, 8 queries."""
    torch.manual_seed(seed)
    model = Mask2Former(Mask2FormerConfig(backbone=RESNET_50, decoder=DecoderConfig(
        num_classes=20, num_queries=8, layers=1))).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # trained-looking batch norms: statistics and affine terms differ
        for name, tensor in model.backbone.state_dict().items():
            if name.endswith(("running_var", "weight")) and ".norm." in name:
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith(("running_mean", "bias")) and ".norm." in name:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    return model


def test_r50_uno_checkpoint_loads_strictly_and_scores(tmp_path: Path) -> None:
    """detectron2's R50 names with SyncBN step counters (dropped by name), K+2 head."""
    source = r50_uno()
    state = detectron2_state(source)
    assert "backbone.res4.5.conv2.norm.num_batches_tracked" in state
    assert "backbone.stem.conv1.norm.running_var" in state
    path = save_pth(state, tmp_path / "model_final.pth")
    request = ExportRequest(model="uno-m2f-r50", checkpoint=str(path), input_size=(64, 96),
                            test_resize=False)
    deploy = build_model(request)
    image = torch.randint(0, 256, (1, 64, 96, 3), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(3))
    x = (image.permute(0, 3, 1, 2).float() - deploy.mean) * deploy.inv_std
    with torch.no_grad():
        expected = Mask2FormerScored(source, "uno")(x)[0]
        torch.testing.assert_close(deploy(image)[0], expected)
    assert deploy.variant == "uno" and expected.std() > 0
    with pytest.raises(CheckpointError, match="missing"):  # not a Swin checkpoint
        build_model(ExportRequest(model="uno-m2f-swin-t", checkpoint=str(path),
                                  input_size=(64, 96), test_resize=False))


@pytest.mark.slow
def test_r50_uno_checkpoint_exports(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from ood_perception.cli.main import main

    path = save_pth(detectron2_state(r50_uno()), tmp_path / "model_final.pth")
    output = tmp_path / "r50.onnx"
    code = main(["export", "--model", "uno-m2f-r50", "--checkpoint", str(path),
                 "--input-size", "64x96", "--no-test-resize", "--output", str(output)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert float(out.split("max |score diff| = ")[1].split()[0]) < 1e-3
