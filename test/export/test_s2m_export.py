"""`ood-perception export` of S2M's SAM graphs: files, metadata, dynamic boxes, ONNX Runtime."""

from __future__ import annotations

import re

import onnx
import pytest

from ood_perception.cli.main import main
from ood_perception.contract import (
    SAM_BOX_BATCH_NAME,
    SAM_BOXES_NAME,
    SAM_DECODER_ROLE,
    SAM_EMBEDDINGS_NAME,
    SAM_ENCODER_ROLE,
    SAM_IOU_NAME,
    SAM_MASKS_NAME,
    SamGraphInfo,
)
from ood_perception.models.sam.deploy import decoder_path_for, torch_path_for


def _diffs(stdout: str) -> dict[str, float]:
    line = next(line for line in stdout.splitlines() if line.startswith("onnxruntime vs torch"))
    return {name: float(value) for name, value in re.findall(r"(\w+) ([0-9.e+-]+)", line)}


def test_export_writes_both_graphs_and_onnxruntime_agrees_with_0_1_17_boxes(tiny_sam):
    assert tiny_sam.rc == 0, tiny_sam.stdout
    diffs = _diffs(tiny_sam.stdout)
    for count in (0, 1, 17):
        assert diffs[f"masks_{count}"] < 1e-4 and diffs[f"iou_{count}"] < 1e-4
    assert diffs["embeddings"] < 1e-3  # antialiased resize: runtimes differ by ~1e-3 grey
    assert torch_path_for(tiny_sam.encoder).is_file()


def test_graphs_describe_themselves_and_take_any_number_of_boxes(tiny_sam):
    encoder = onnx.load(str(tiny_sam.encoder))
    decoder = onnx.load(str(decoder_path_for(tiny_sam.encoder)))
    info = SamGraphInfo.from_metadata({p.key: p.value for p in encoder.metadata_props})
    assert (info.role, info.model_name, info.input_size) == (SAM_ENCODER_ROLE, "sam-tiny",
                                                             (64, 96))
    assert info.resized == (43, 64) and info.img_size == 64 and info.embedding_size == 4
    decoder_info = SamGraphInfo.from_metadata({p.key: p.value for p in decoder.metadata_props})
    assert decoder_info.role == SAM_DECODER_ROLE
    assert [i.name for i in encoder.graph.output] == [SAM_EMBEDDINGS_NAME]
    assert [i.name for i in decoder.graph.input] == [SAM_EMBEDDINGS_NAME, SAM_BOXES_NAME,
                                                     SAM_BOX_BATCH_NAME]
    assert [o.name for o in decoder.graph.output] == [SAM_MASKS_NAME, SAM_IOU_NAME]
    boxes = decoder.graph.input[1].type.tensor_type.shape.dim
    assert boxes[0].dim_param and not boxes[0].dim_value  # dynamic N
    assert boxes[1].dim_value == 4


@pytest.mark.parametrize("flags", [["--score", "uno"], ["--window", "10x10"],
                                   ["--single-window"]])
def test_flags_that_mean_nothing_to_sam_are_refused(tmp_path, capsys, flags):
    rc = main(["export", "--model", "mobile-sam", "--random-init", "--input-size", "64x96",
               "--output", str(tmp_path / "sam.onnx"), *flags])
    assert rc == 2
    assert "do not apply to SAM models" in capsys.readouterr().err


@pytest.mark.slow
def test_the_detector_exports_and_onnxruntime_finds_the_same_boxes(tmp_path):
    """Its NMS and RoIAlign custom ops become ONNX NonMaxSuppression and RoiAlign."""
    import numpy as np
    import onnxruntime as ort
    from s2m_tiny import random_detector, score_map

    from ood_perception.export.s2m import DETECTOR_INPUT, DETECTOR_OUTPUTS, export_detector

    detector = random_detector(seed=0)
    path = export_detector(detector, (100, 140), tmp_path / "detector.onnx")
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"NonMaxSuppression", "RoiAlign"} <= ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seed in (1, 3):
        score = score_map(100, 140, seed=seed)
        boxes, scores, classes = session.run(list(DETECTOR_OUTPUTS),
                                             {DETECTOR_INPUT: score[None].numpy()})
        found = detector([score])[0]
        assert len(boxes) == len(found.boxes) > 10
        assert np.abs(boxes - found.boxes.detach().numpy()).max() < 1e-3
        assert np.abs(scores - found.scores.detach().numpy()).max() < 1e-5
        assert np.array_equal(classes, found.classes.numpy())


def test_detector_export_refuses_sam_and_contract_flags(tmp_path, capsys):
    rc = main(["export", "--model", "s2m-detector", "--random-init", "--input-size", "64x96",
               "--output", str(tmp_path / "d.onnx"), "--save-torch"])
    assert rc == 2
    assert "--save-torch do not apply to s2m-detector" in capsys.readouterr().err
