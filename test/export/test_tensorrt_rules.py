"""Every exported family follows TensorRT's uint8 rules, read from the ONNX it writes; export
refuses a graph that does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from uem_tiny import WINDOW, tiny_config, tiny_network

from ood_perception.contract import CITYSCAPES_CLASSES, ModelInfo
from ood_perception.errors import ConfigurationError
from ood_perception.export.onnx import export_onnx
from ood_perception.export.tensorrt_rules import (
    refuse_uint8_rule_violations,
    uint8_rule_violations,
)
from ood_perception.models.backbones.resnet import ResNetConfig
from ood_perception.models.backbones.swin import SwinConfig
from ood_perception.models.deploy import DeployModel
from ood_perception.models.mask2former.model import (
    Mask2Former,
    Mask2FormerConfig,
    Mask2FormerScored,
)
from ood_perception.models.mask2former.transformer_decoder import DecoderConfig
from ood_perception.models.registry import ExportRequest, build_model
from ood_perception.models.uem.build import build_uem


def _uem(variant: str, single: bool) -> DeployModel:
    request = ExportRequest(model="uem-tiny", random_init=True, input_size=(70, 112),
                            window=WINDOW, stride=None if single else 14,
                            single_window=single)
    deploy = build_uem(request, tiny_config(variant))
    deploy.network.coverage.network.load_state_dict(tiny_network(variant, seed=1).state_dict())
    return deploy


def _mask2former(backbone) -> DeployModel:
    torch.manual_seed(0)
    model = Mask2Former(Mask2FormerConfig(
        backbone=backbone, decoder=DecoderConfig(num_classes=20, num_queries=4, hidden_dim=32,
                                                 heads=4, ffn_dim=64, layers=1, mask_dim=32),
        conv_dim=32, enc_layers=1, enc_heads=4, enc_points=2, enc_ffn_dim=64)).eval()
    info = ModelInfo(64, 96, model_name="uno-m2f-tiny", score_name="uno",
                     class_names=CITYSCAPES_CLASSES, tiling={"mode": "single"})
    return DeployModel(Mask2FormerScored(model, "uno"), info)


FAMILIES = {
    "uem-gg-tiled": lambda: _uem("gg", single=False),
    "uem-gd-single": lambda: _uem("gd", single=True),
    "uem-dd-tiled": lambda: _uem("dd", single=False),
    "m2f-swin": lambda: _mask2former(SwinConfig(32, (2, 2, 2, 2), (1, 2, 4, 8), 4)),
    "m2f-resnet": lambda: _mask2former(ResNetConfig(stem_out_channels=8, res2_out_channels=16)),
    "uem-demo": lambda: build_model(ExportRequest(model="uem-demo", random_init=True,
                                                  input_size=(56, 112), window=(56, 112))),
    "dood-demo": lambda: build_model(ExportRequest(model="dood-demo", random_init=True,
                                                   input_size=(56, 112), window=(56, 112),
                                                   timesteps=2)),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_anomaly_family_follows_the_uint8_rules(tmp_path: Path, family: str) -> None:
    path = export_onnx(FAMILIES[family]().eval(), tmp_path / f"{family}.onnx")
    model = onnx.load(str(path))
    assert uint8_rule_violations(model) == []
    image = model.graph.input[0]
    assert image.type.tensor_type.elem_type == TensorProto.UINT8
    consumers = [node for node in model.graph.node if image.name in node.input]
    assert consumers and all(node.op_type == "Cast" for node in consumers)


def test_sam_encoder_and_decoder_follow_the_uint8_rules(tiny_sam) -> None:
    from ood_perception.models.sam.deploy import decoder_path_for

    assert tiny_sam.rc == 0, tiny_sam.stdout
    for path in (tiny_sam.encoder, decoder_path_for(tiny_sam.encoder)):
        assert uint8_rule_violations(onnx.load(str(path))) == [], path.name


@pytest.mark.slow
def test_the_s2m_detector_follows_the_uint8_rules(tmp_path: Path) -> None:
    from s2m_tiny import random_detector

    from ood_perception.export.s2m import export_detector

    path = export_detector(random_detector(seed=0), (64, 96), tmp_path / "detector.onnx")
    assert uint8_rule_violations(onnx.load(str(path))) == []


def _graph(*nodes, outputs) -> onnx.ModelProto:
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 4, 4, 3])
    return helper.make_model(helper.make_graph(list(nodes), "g", [image], outputs),
                             opset_imports=[helper.make_opsetid("", 18)])


def _out(name: str, dtype: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, None)


def test_each_rule_is_caught_with_its_source() -> None:
    transpose_first = _graph(
        helper.make_node("Transpose", ["image"], ["t"], perm=[0, 3, 1, 2], name="tr"),
        helper.make_node("Cast", ["t"], ["f"], to=TensorProto.FLOAT, name="c"),
        outputs=[_out("f", TensorProto.FLOAT)])
    [message] = [m for m in uint8_rule_violations(transpose_first) if "feeds" in m]
    assert "Transpose 'tr'" in message and "#3985" in message
    int_to_uint8 = _graph(
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ArgMax", ["f"], ["i"], axis=3, keepdims=0),
        helper.make_node("Cast", ["i"], ["semantic"], to=TensorProto.UINT8, name="u"),
        outputs=[_out("semantic", TensorProto.UINT8)])
    [message] = uint8_rule_violations(int_to_uint8)
    assert "Cast 'u' of int64" in message and "IIdentityLayer" in message
    intermediate = _graph(
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["f"], ["u"], to=TensorProto.UINT8, name="inner"),
        helper.make_node("Cast", ["u"], ["g"], to=TensorProto.FLOAT),
        outputs=[_out("g", TensorProto.FLOAT)])
    [message] = uint8_rule_violations(intermediate)
    assert "inside the graph" in message and "operators.md" in message
    legal = _graph(
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["f"], ["semantic"], to=TensorProto.UINT8),
        outputs=[_out("semantic", TensorProto.UINT8)])
    assert uint8_rule_violations(legal) == []


def test_export_refuses_a_graph_that_breaks_them_in_one_line(tmp_path: Path) -> None:
    class TransposeFirst(torch.nn.Module):
        def forward(self, x: torch.Tensor):
            return x[:, 0], torch.zeros_like(x[:, 0], dtype=torch.long)

    class Raw(DeployModel):  # the old order: transpose the uint8 image, then cast
        def forward(self, image: torch.Tensor):
            x = image.permute(0, 3, 1, 2).float()
            score, classes = self.network(x)
            return score, classes.to(torch.uint8)

    deploy = Raw(TransposeFirst(), ModelInfo(input_height=8, input_width=8))
    with pytest.raises(ConfigurationError, match="would not build in TensorRT") as caught:
        export_onnx(deploy, tmp_path / "bad.onnx")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "bad.onnx").exists()


def test_refusal_names_the_file_and_counts_the_rest(tmp_path: Path) -> None:
    bad = _graph(
        helper.make_node("Shape", ["image"], ["s"]),
        helper.make_node("Transpose", ["image"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["t"], ["f"], to=TensorProto.FLOAT),
        outputs=[_out("f", TensorProto.FLOAT), _out("s", TensorProto.INT64)])
    onnx.save(bad, str(tmp_path / "bad.onnx"))
    with pytest.raises(ConfigurationError, match=r"bad.onnx would not build in TensorRT: "
                       r"uint8 input 'image' feeds Shape .* \(and 2 more\)"):
        refuse_uint8_rule_violations(bad, tmp_path / "bad.onnx")


def test_the_tiny_contract_graph_of_the_backend_tests_follows_them(tiny_model_path) -> None:
    """It is the graph the TensorRT engine tests build where TensorRT runs."""
    assert uint8_rule_violations(onnx.load(str(tiny_model_path))) == []


def test_no_folded_constant_leaves_fp16_range_with_small_gmm_diagonals(tmp_path: Path) -> None:
    """A TensorRT fp16 engine stores the graph's constants in fp16 (largest 65504); trained
    GMM heads have small diagonals, whose 1 / diagonal^2 would not fit."""
    deploy = _uem("gg", single=True)
    with torch.no_grad():
        for name, tensor in deploy.state_dict().items():
            if name.endswith("diagonal"):
                tensor.fill_(0.003)
    model = onnx.load(str(export_onnx(deploy.eval(), tmp_path / "gg.onnx")))
    tensors = [*model.graph.initializer, *(attribute.t for node in model.graph.node
                                           for attribute in node.attribute
                                           if attribute.name == "value")]
    largest = max(float(np.abs(numpy_helper.to_array(t)).max(initial=0.0)) for t in tensors
                  if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16))
    assert largest < 65504.0, largest
