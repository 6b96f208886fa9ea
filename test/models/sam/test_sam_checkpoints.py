"""Official SAM / MobileSAM checkpoint layouts: strict loading, keys dropped by name, errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from sam_tiny import (
    TINY_MOBILE,
    TINY_VIT,
    official_state,
    randomize,
    reference_sam,
    save_official,
)

from ood_perception.errors import CheckpointError
from ood_perception.models.sam.checkpoints import (
    load_sam_checkpoint,
    not_needed,
    read_sam_checkpoint,
)
from ood_perception.models.sam.deploy import load_sam_deploy, save_sam_deploy
from ood_perception.models.sam.sam import SAM_VARIANTS, Sam


def test_dropped_keys_are_exactly_what_segment_anything_has_beyond_ours():
    official = reference_sam(TINY_VIT).state_dict()
    model = Sam(TINY_VIT)
    dropped = not_needed(model)
    assert set(official) == set(model.state_dict()) | set(dropped)
    assert not set(model.state_dict()) & set(dropped)
    assert {k: tuple(official[k].shape) for k in dropped} == dropped
    assert "prompt_encoder.mask_downscaling.6.weight" in dropped
    assert "mask_decoder.output_hypernetworks_mlps.3.layers.2.bias" in dropped
    assert "prompt_encoder.point_embeddings.2.weight" not in dropped  # box corners stay


def test_mobile_sam_layout_loads_strictly_and_drops_the_classifier(tmp_path: Path):
    model = randomize(Sam(TINY_MOBILE), seed=2)
    state = official_state(model)
    assert {"image_encoder.head.weight", "image_encoder.norm_head.bias"} <= set(state)
    assert any(k.endswith("bn.num_batches_tracked") for k in state)
    loaded = load_sam_checkpoint(Sam(TINY_MOBILE), save_official(state, tmp_path / "m.pt"))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


@pytest.mark.parametrize("variant", ["sam-vit-b", "mobile-sam"])
def test_full_size_variants_keep_the_256x64x64_embedding(variant: str):
    assert all(cfg.img_size == 1024 and cfg.grid == 64 for cfg in SAM_VARIANTS.values())
    with torch.device("meta"):
        model = Sam(SAM_VARIANTS[variant])
        embedding = model.image_encoder(torch.zeros(1, 3, 1024, 1024))
    assert tuple(embedding.shape) == (1, 256, 64, 64)
    assert model.prompt_encoder.image_embedding_size == (64, 64)


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path):
    state = official_state(Sam(TINY_VIT))
    del state["mask_decoder.iou_token.weight"]
    state["image_encoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as error:
        load_sam_checkpoint(Sam(TINY_VIT), save_official(state, tmp_path / "bad.pth"))
    assert "mask_decoder.iou_token.weight" in str(error.value)
    assert "image_encoder.extra.weight" in str(error.value)


def test_checkpoints_that_are_not_state_dicts_or_run_code_are_refused(tmp_path: Path):
    torch.save({"model": {"a": torch.zeros(1)}}, tmp_path / "nested.pth")
    with pytest.raises(CheckpointError, match="not a SAM state dict"):
        read_sam_checkpoint(tmp_path / "nested.pth")
    with (tmp_path / "evil.pth").open("wb") as f:
        pickle.dump({"x": print}, f)  # a global a weights-only load must refuse
    with pytest.raises(CheckpointError, match="not a readable SAM checkpoint"):
        read_sam_checkpoint(tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="not found"):
        read_sam_checkpoint(tmp_path / "missing.pth")


def test_torch_deploy_file_round_trips(tmp_path: Path):
    model = randomize(Sam(TINY_MOBILE), seed=3)
    path = save_sam_deploy(model, "mobile-sam", (48, 80), tmp_path / "sam.pt")
    loaded, name, size = load_sam_deploy(path)
    assert (name, size) == ("mobile-sam", (48, 80))
    assert loaded.cfg == model.cfg
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
