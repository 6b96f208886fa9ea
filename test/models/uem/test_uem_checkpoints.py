"""Official-layout Lightning checkpoints load, reproduce their model and fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from uem_tiny import WINDOW, tiny_config, tiny_network

from ood_perception.errors import CheckpointError
from ood_perception.models.registry import ExportRequest
from ood_perception.models.uem.build import build_uem
from ood_perception.models.uem.checkpoints import (
    load_state_dict,
    official_segmentor_state,
    official_uem_state,
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


def test_segmentor_checkpoint_overrides_uem_segmentor(tmp_path: Path) -> None:
    uem_net, seg_net = tiny_network("gd", seed=1), tiny_network("gd", seed=2)
    uem_path = save_lightning_checkpoint(official_uem_state(uem_net), tmp_path / "uem.ckpt")
    seg_path = save_lightning_checkpoint(official_segmentor_state(seg_net.segmentor),
                                         tmp_path / "seg.ckpt", config_object())
    loaded = build_uem(request(uem_path, "gd", seg_path), tiny_config("gd"))
    network = loaded.network.coverage.network
    torch.testing.assert_close(network.segmentor.state_dict(), seg_net.segmentor.state_dict())
    torch.testing.assert_close(network.ood_head.state_dict(), uem_net.ood_head.state_dict())


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
