"""Official-layout Lightning checkpoints load, reproduce their model and fail loudly."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from uem_tiny import (
    WINDOW,
    official_segmentor_state,
    official_uem_state,
    tiny_config,
    tiny_network,
)

from ood_perception.errors import CheckpointError
from ood_perception.models.registry import ExportRequest
from ood_perception.models.uem.build import build_uem
from ood_perception.models.uem.checkpoints import (
    compare_segmentor_states,
    load_state_dict,
    save_lightning_checkpoint,
)

RAN = []


class PickledConfig(dict):
    """Stands in for the easydict hyper-parameters: weights_only refuses it."""

    def __setstate__(self, state) -> None:
        RAN.append("setstate")


def config_object() -> PickledConfig:
    cfg = PickledConfig(MODEL={"NAME": "uem"})
    cfg.MODEL = {"NAME": "uem"}
    return cfg


def request(path: Path, variant: str, segmentor: Path | None = None) -> ExportRequest:
    return ExportRequest(model="uem-tiny", variant=variant, checkpoint=str(path),
                         segmentor_checkpoint=str(segmentor) if segmentor else None,
                         input_size=(70, 112), window=WINDOW, stride=14)


def scores(deploy: torch.nn.Module, seed: int = 3) -> torch.Tensor:
    image = torch.randint(0, 256, (1, 70, 112, 3), generator=torch.Generator().manual_seed(seed),
                          dtype=torch.uint8)
    with torch.no_grad():
        return deploy(image)[0]


def reference(variant: str, seed: int) -> torch.nn.Module:
    """The tiny network wrapped the same way the builder wraps a loaded one."""
    deploy = build_uem(ExportRequest(model="uem-tiny", random_init=True, input_size=(70, 112),
                                     window=WINDOW, stride=14), tiny_config(variant))
    network = tiny_network(variant, seed)
    deploy.network.coverage.network.load_state_dict(network.state_dict())
    return deploy


@pytest.mark.parametrize("variant", ["dd", "gd", "gg"])
def test_uem_checkpoint_reproduces_its_model(tmp_path: Path, variant: str) -> None:
    network = tiny_network(variant, seed=1)
    state = official_uem_state(network)
    if variant != "dd":
        assert "segmentor.segmentation_head.queue" in state
    path = save_lightning_checkpoint(state, tmp_path / "uem.ckpt", config_object())
    loaded = build_uem(request(path, variant), tiny_config(variant))
    torch.testing.assert_close(scores(loaded), scores(reference(variant, 1)))
    assert RAN == []


def drift_batch_norms(network: torch.nn.Module, seed: int = 9) -> torch.nn.Module:
    """What official UEM training does to its frozen segmentor (left in train mode): the
    batch norms' running statistics move."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in network.segmentor.state_dict().items():
            if name.endswith("running_mean"):
                tensor.add_(torch.randn(tensor.shape, generator=gen))
            elif name.endswith("running_var"):
                tensor.mul_(torch.exp(torch.randn(tensor.shape, generator=gen)))
    return network


def test_uem_file_segmentor_wins_over_its_segmentor_file(tmp_path: Path, caplog) -> None:
    """Official order: the segmentor is built from the segmentor file, then the UEM
    checkpoint is loaded over the whole model, so a drifted UEM file's statistics are used."""
    segmentor_net = tiny_network("gd", seed=1)
    uem_net = drift_batch_norms(tiny_network("gd", seed=1))
    seg_path = save_lightning_checkpoint(official_segmentor_state(segmentor_net.segmentor),
                                         tmp_path / "seg.ckpt", config_object())
    uem_path = save_lightning_checkpoint(official_uem_state(uem_net), tmp_path / "uem.ckpt")
    with caplog.at_level(logging.WARNING):
        loaded = build_uem(request(uem_path, "gd", seg_path), tiny_config("gd"))
    network = loaded.network.coverage.network
    torch.testing.assert_close(network.state_dict(), uem_net.state_dict())
    drifted = sum(k.endswith(("running_mean", "running_var"))
                  for k in uem_net.segmentor.state_dict())
    assert f"differ in {drifted} of " in caplog.text
    assert "using the UEM checkpoint's" in caplog.text
    official = reference("gd", 1)
    official.network.coverage.network.load_state_dict(uem_net.state_dict())
    segmentor_file = reference("gd", 1)
    expected = scores(official)
    torch.testing.assert_close(scores(loaded), expected)
    spread = expected.max() - expected.min()
    assert (scores(loaded) - scores(segmentor_file)).abs().max() > 0.01 * spread


def test_segmentor_file_fills_what_the_uem_file_lacks(tmp_path: Path, caplog) -> None:
    uem_net, seg_net = tiny_network("dd", seed=1), tiny_network("dd", seed=2)
    state = {k: v for k, v in official_uem_state(uem_net).items()
             if not k.startswith("segmentor.segmentation_head.")}
    uem_path = save_lightning_checkpoint(state, tmp_path / "uem.ckpt")
    seg_path = save_lightning_checkpoint(official_segmentor_state(seg_net.segmentor),
                                         tmp_path / "seg.ckpt")
    with caplog.at_level(logging.WARNING):
        loaded = build_uem(request(uem_path, "dd", seg_path), tiny_config("dd"))
    network = loaded.network.coverage.network
    torch.testing.assert_close(network.segmentor.segmentation_head.state_dict(),
                               seg_net.segmentor.segmentation_head.state_dict())
    torch.testing.assert_close(network.segmentor.backbone.state_dict(),
                               uem_net.segmentor.backbone.state_dict())
    assert "2 segmentor tensors missing from" in caplog.text


def test_segmentor_comparison_counts_and_locates_differences() -> None:
    network = tiny_network("dd", seed=1)
    segmentor = official_segmentor_state(network.segmentor)
    state = official_uem_state(network)
    same = compare_segmentor_states(state, segmentor)
    assert same.shared == len(network.segmentor.state_dict()) and not same.differing
    assert same.describe("u", "s") == ""
    key = "backbone.learnable_layers.fpn1.2.running_var"
    state["segmentor." + key] = state["segmentor." + key] + 0.5
    state["segmentor.segmentation_head._head.bias"] = torch.zeros(3)  # another shape
    different = compare_segmentor_states(state, segmentor)
    assert set(different.differing) == {key, "segmentation_head._head.bias"}
    assert different.largest_key == key and abs(different.largest - 0.5) < 1e-6


def test_training_buffers_are_dropped(tmp_path: Path) -> None:
    state = official_uem_state(tiny_network("gg"))
    state["segmentor.criterion.class_weight"] = torch.ones(5)
    state["iou_metric.confmat"] = torch.zeros(5, 5)
    path = save_lightning_checkpoint(state, tmp_path / "uem.ckpt", config_object())
    raw = load_state_dict(path)
    assert "ood_head.queue" in raw  # read, memory-mapped ...
    loaded = build_uem(request(path, "gg"), tiny_config("gg"))
    keys = set(loaded.network.coverage.network.state_dict())
    assert not any(k.endswith(("queue", "queue_ptr", "eye_matrix")) for k in keys)


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_key_mismatch_names_the_key(tmp_path: Path, change: str) -> None:
    state = official_uem_state(tiny_network("dd"))
    key = "ood_projector._layers.2.weight"
    if change == "missing":
        del state[key]
    elif change == "unexpected":
        key = "ood_head.extra_bias"
        state[key] = torch.zeros(2)
    else:
        state[key] = torch.zeros(3, 3)
    path = save_lightning_checkpoint(state, tmp_path / "uem.ckpt")
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        build_uem(request(path, "dd"), tiny_config("dd"))


def test_foreign_prefix_and_variant_mismatch(tmp_path: Path) -> None:
    state = official_uem_state(tiny_network("dd"))
    state["model.stray"] = torch.zeros(1)
    path = save_lightning_checkpoint(state, tmp_path / "uem.ckpt")
    with pytest.raises(CheckpointError, match="model.stray"):
        build_uem(request(path, "dd"), tiny_config("dd"))
    del state["model.stray"]
    path = save_lightning_checkpoint(state, tmp_path / "uem.ckpt")
    with pytest.raises(CheckpointError, match="means"):
        build_uem(request(path, "gg"), tiny_config("gg"))


def test_not_a_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    for content in (b"not a zip", b'"""a python file"""\n'):
        bad.write_bytes(content)
        with pytest.raises(CheckpointError, match="not a readable"):
            load_state_dict(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict(tmp_path / "absent.ckpt")
