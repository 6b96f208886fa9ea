"""ONNX export of a deploy model (uint8 image in, contract outputs out) and its checks.

Model-agnostic: any `models.deploy.DeployModel` is traced with a dynamic batch, gets the
contract metadata and is checked with `onnx.checker` and ONNX Runtime.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ood_perception.contract import INPUT_NAME, SCORE_NAME, SEMANTIC_NAME, ModelInfo
from ood_perception.errors import ConfigurationError
from ood_perception.export.tensorrt_rules import (
    refuse_uint8_rule_violations,
    shapes_from_float_casts,
)
from ood_perception.models.deploy import DeployModel

LOG = logging.getLogger(__name__)
# Above this size the ONNX weights go to an external data file (protobuf limit is 2 GiB).
EXTERNAL_DATA_BYTES = 1_800_000_000


def sample_images(info: ModelInfo, batch: int = 2, seed: int = 0) -> np.ndarray:
    """Random uint8 frames at the model input size, for export tracing and checks."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(batch, *info.input_size, 3), dtype=np.uint8)


EXPORTERS = ("auto", "dynamo", "torchscript")


def _dynamo_export(deploy: DeployModel, path: Path, sample: torch.Tensor, opset: int) -> None:
    batch = torch.export.Dim("batch", min=1, max=64)
    model: torch.nn.Module | torch.export.ExportedProgram = deploy
    if any(getattr(module, "uses_scan", False) for module in deploy.modules()):
        # torch.export's non-strict tracer fails on a `scan` over a module; the strict one
        # (TorchDynamo) traces it, so such models skip the non-strict attempt.
        model = torch.export.export(deploy, (sample,), dynamic_shapes={"image": {0: batch}},
                                    strict=True)
    program = torch.onnx.export(
        model, (sample,), input_names=[INPUT_NAME], output_names=[SCORE_NAME, SEMANTIC_NAME],
        opset_version=opset, dynamic_shapes={"image": {0: batch}}, dynamo=True,
        external_data=False)
    program.save(str(path))


def _torchscript_export(deploy: DeployModel, path: Path, sample: torch.Tensor,
                        opset: int) -> None:
    torch.onnx.export(
        deploy, (sample,), str(path), input_names=[INPUT_NAME],
        output_names=[SCORE_NAME, SEMANTIC_NAME], opset_version=opset,
        dynamic_axes={INPUT_NAME: {0: "batch"}, SCORE_NAME: {0: "batch"},
                      SEMANTIC_NAME: {0: "batch"}}, dynamo=False)


def _torch_export(deploy: DeployModel, path: Path, sample: torch.Tensor, opset: int,
                  exporter: str) -> str:
    """"auto": the dynamo exporter, and the TorchScript one only if dynamo fails."""
    if exporter in ("auto", "dynamo"):
        try:
            _dynamo_export(deploy, path, sample, opset)
            return "dynamo"
        except Exception as exc:  # any dynamo failure falls back (logged)
            if exporter == "dynamo":
                raise
            LOG.warning("dynamo ONNX export failed (%s: %s); using dynamo=False",
                        type(exc).__name__, (str(exc).splitlines() or [""])[0])
    _torchscript_export(deploy, path, sample, opset)
    return "torchscript"


def export_onnx(deploy: DeployModel, path: str | Path, opset: int = 18,
                exporter: str = "auto") -> Path:
    """Write a contract ONNX graph (dynamic batch, fixed H, W, metadata) and check it;
    a graph TensorRT would refuse (export/tensorrt_rules.py) is deleted, not kept.

    `exporter`: "auto" (dynamo, falling back to TorchScript), "dynamo" or "torchscript".
    """
    import onnx

    if opset < 17:
        raise ConfigurationError(f"opset must be >= 17, got {opset}")
    if exporter not in EXPORTERS:
        raise ConfigurationError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deploy = deploy.eval()
    sample = torch.from_numpy(sample_images(deploy.info, batch=2))
    with torch.no_grad():
        exporter = _torch_export(deploy, path, sample, opset, exporter)
    model = onnx.load(str(path))
    shapes_from_float_casts(model)
    refuse_uint8_rule_violations(model, path)
    del model.metadata_props[:]
    for key, value in deploy.info.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = f"exported with the {exporter} exporter"
    external = model.ByteSize() > EXTERNAL_DATA_BYTES
    onnx.save(model, str(path), save_as_external_data=external,
              location=path.name + ".data" if external else None)
    onnx.checker.check_model(str(path))
    return path


def torch_scores(deploy: DeployModel, images: np.ndarray) -> np.ndarray:
    """PyTorch's anomaly scores float32 [B, H, W] of uint8 `images` [B, H, W, 3]."""
    with torch.no_grad():
        score, _ = deploy.eval()(torch.from_numpy(images))
    return score.numpy()


def onnxruntime_scores(path: str | Path, images: np.ndarray) -> np.ndarray:
    """ONNX Runtime's (CPU) anomaly scores float32 [B, H, W] of uint8 `images`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([SCORE_NAME], {INPUT_NAME: images})[0]


def check_onnxruntime(path: str | Path, deploy: DeployModel, images: np.ndarray) -> float:
    """Largest |score_onnxruntime - score_torch| over `images` (uint8 [B, H, W, 3]).

    PyTorch runs first and its activations are gone before ONNX Runtime starts, so the two
    runtimes' peaks never add up."""
    reference = torch_scores(deploy, images)
    return float(np.abs(onnxruntime_scores(path, images) - reference).max())
