"""ONNX export of the S2M graphs (SAM's image encoder and prompt-and-mask decoder, and the
box detector) and their checks.

The encoder graph takes the contract's uint8 frames at the anomaly graph's input size (dynamic
batch); the decoder graph takes its embeddings, N boxes and their frame indices (N and the batch
dynamic). Both carry `SamGraphInfo` metadata, pass `onnx.checker`, and are compared with
PyTorch in ONNX Runtime. The detector graph maps its two custom ops onto ONNX
`NonMaxSuppression` and `RoiAlign`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ood_perception.contract import (
    INPUT_NAME,
    SAM_BOX_BATCH_NAME,
    SAM_BOXES_NAME,
    SAM_DECODER_ROLE,
    SAM_EMBEDDINGS_NAME,
    SAM_ENCODER_ROLE,
    SAM_IOU_NAME,
    SAM_MASKS_NAME,
    SamGraphInfo,
)
from ood_perception.errors import ConfigurationError
from ood_perception.export.onnx import EXTERNAL_DATA_BYTES
from ood_perception.export.tensorrt_rules import (
    refuse_uint8_rule_violations,
    shapes_from_float_casts,
)
from ood_perception.models.sam.deploy import (
    SamImageEncoderDeploy,
    SamPromptDecoderDeploy,
    decoder_path_for,
    graph_info,
)
from ood_perception.models.sam.sam import Sam

# Names of the detector graph's tensors.
DETECTOR_INPUT = "anomaly_score"
DETECTOR_OUTPUTS = ("boxes", "scores", "classes")
# Upper bounds the exporter needs for the dynamic axes; the graphs take any size below.
MAX_BATCH = 64
MAX_BOXES = 1024


def sample_boxes(count: int, info: SamGraphInfo, seed: int = 0) -> np.ndarray:
    """float32 [count, 4] random x0 <= x1, y0 <= y1 boxes inside SAM's resized frame."""
    rng = np.random.default_rng(seed)
    size = np.array([info.resized_width, info.resized_height] * 2, dtype=np.float32)
    corners = rng.uniform(0.0, 1.0, size=(count, 2, 2)).astype(np.float32)
    corners.sort(axis=1)
    return (corners.transpose(0, 2, 1).reshape(count, 4)[:, [0, 2, 1, 3]] * size).astype(
        np.float32)


def _export(module: torch.nn.Module, args: tuple, path: Path, inputs: list[str],
            outputs: list[str], dynamic: dict, opset: int) -> None:
    """The dynamo exporter with named dynamic axes (one Dim per label, shared by inputs)."""
    labels = {label: torch.export.Dim(label, min=1, max=bound)
              for axes in dynamic.values() for label, bound in axes.values()}
    dims = {name: {axis: labels[label] for axis, (label, _) in axes.items()}
            for name, axes in dynamic.items()}
    with warnings.catch_warnings():  # outputs sharing an axis with inputs keep one name
        warnings.filterwarnings("ignore", message="# The axis name")
        program = torch.onnx.export(module, args, input_names=inputs, output_names=outputs,
                                    opset_version=opset, dynamic_shapes=dims, dynamo=True)
    program.save(str(path))


def _finish(path: Path, info: SamGraphInfo) -> None:
    """Metadata in; weights in `<name>.data` beside the graph above the protobuf limit
    (ViT-H's encoder)."""
    import onnx

    model = onnx.load(str(path))
    shapes_from_float_casts(model)
    refuse_uint8_rule_violations(model, path)
    del model.metadata_props[:]
    for key, value in info.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    external = model.ByteSize() > EXTERNAL_DATA_BYTES
    onnx.save(model, str(path), save_as_external_data=external,
              location=path.name + ".data" if external else None)
    onnx.checker.check_model(str(path))


def export_sam(sam: Sam, model_name: str, input_size: tuple[int, int], path: str | Path,
               opset: int = 18) -> tuple[Path, Path]:
    """Write the encoder graph at `path` and the decoder graph beside it; return both paths."""
    if opset < 17:
        raise ConfigurationError(f"opset must be >= 17, got {opset}")
    if min(input_size) <= 0:
        raise ConfigurationError(f"input size must be positive, got {input_size}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sam = sam.eval()
    encoder = SamImageEncoderDeploy(sam, input_size).eval()
    decoder = SamPromptDecoderDeploy(sam).eval()
    frames = torch.zeros((2, *input_size, 3), dtype=torch.uint8)
    grid = sam.cfg.grid
    embeddings = torch.zeros((2, 256, grid, grid))
    info = graph_info(SAM_DECODER_ROLE, model_name, sam, input_size)
    boxes = torch.from_numpy(sample_boxes(3, info))
    index = torch.tensor([0, 1, 1])
    decoder_path = decoder_path_for(path)
    with torch.no_grad():
        _export(encoder, (frames,), path, [INPUT_NAME], [SAM_EMBEDDINGS_NAME],
                {"image": {0: ("batch", MAX_BATCH)}}, opset)
        _export(decoder, (embeddings, boxes, index), decoder_path,
                [SAM_EMBEDDINGS_NAME, SAM_BOXES_NAME, SAM_BOX_BATCH_NAME],
                [SAM_MASKS_NAME, SAM_IOU_NAME],
                {"image_embeddings": {0: ("batch", MAX_BATCH)},
                 "boxes": {0: ("boxes", MAX_BOXES)},
                 "box_batch_index": {0: ("boxes", MAX_BOXES)}}, opset)
    _finish(path, graph_info(SAM_ENCODER_ROLE, model_name, sam, input_size))
    _finish(decoder_path, info)
    return path, decoder_path


def check_sam_onnxruntime(encoder_path: str | Path, sam: Sam, input_size: tuple[int, int],
                          box_counts: tuple[int, ...] = (0, 1, 17), seed: int = 0) -> dict:
    """Largest |ONNX Runtime - PyTorch| of the embeddings and, per box count, of the mask
    logits and IoU predictions (two random frames, boxes spread over both)."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    encoder = ort.InferenceSession(str(encoder_path), providers=providers)
    decoder = ort.InferenceSession(str(decoder_path_for(encoder_path)), providers=providers)
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(2, *input_size, 3), dtype=np.uint8)
    with torch.no_grad():
        reference = SamImageEncoderDeploy(sam, input_size).eval()(torch.from_numpy(frames))
    embeddings = encoder.run([SAM_EMBEDDINGS_NAME], {INPUT_NAME: frames})[0]
    result = {"embeddings": float(np.abs(embeddings - reference.numpy()).max())}
    info = graph_info(SAM_DECODER_ROLE, "check", sam, input_size)
    prompt_decoder = SamPromptDecoderDeploy(sam).eval()
    for count in box_counts:
        boxes = sample_boxes(count, info, seed=seed + count)
        index = (np.arange(count) % 2).astype(np.int64)
        masks, iou = decoder.run([SAM_MASKS_NAME, SAM_IOU_NAME], {
            SAM_EMBEDDINGS_NAME: embeddings, SAM_BOXES_NAME: boxes, SAM_BOX_BATCH_NAME: index})
        with torch.no_grad():
            ref_masks, ref_iou = prompt_decoder(torch.from_numpy(embeddings),
                                                torch.from_numpy(boxes), torch.from_numpy(index))
        if masks.shape != tuple(ref_masks.shape):
            raise ConfigurationError(f"decoder graph returned {masks.shape} for {count} boxes, "
                                     f"PyTorch {tuple(ref_masks.shape)}")
        result[f"masks_{count}"] = float(np.abs(masks - ref_masks.numpy()).max(initial=0.0))
        result[f"iou_{count}"] = float(np.abs(iou - ref_iou.numpy()).max(initial=0.0))
    return result


def _nms_onnx(boxes, scores, groups, num_groups: int, iou_threshold: float,
              score_threshold: float):
    """`ood_perception::nms` as ONNX: one NonMaxSuppression class per group (a box scores -inf
    outside its own), then the kept boxes in descending score."""
    from onnxscript import opset18 as op

    onehot = op.Equal(op.Unsqueeze(op.Range(0, num_groups, 1), [1]), op.Unsqueeze(groups, [0]))
    per_group = op.Where(onehot, op.Unsqueeze(scores, [0]), op.Constant(value_float=-np.inf))
    selected = op.NonMaxSuppression(
        op.Unsqueeze(boxes, [0]), op.Unsqueeze(per_group, [0]), op.Shape(scores),
        op.Constant(value_float=iou_threshold), op.Constant(value_float=score_threshold))
    kept = op.Reshape(op.Slice(selected, [2], [3], [1]), [-1])
    _, order = op.TopK(op.Gather(scores, kept), op.Shape(kept), axis=0, largest=1, sorted=1)
    return op.Gather(kept, order)


def _roi_align_onnx(features, boxes, batch_index, output_size: int, spatial_scale: float):
    """`ood_perception::roi_align` as ONNX RoiAlign (aligned = half-pixel, adaptive grid)."""
    from onnxscript import opset18 as op

    return op.RoiAlign(features, boxes, batch_index, coordinate_transformation_mode="half_pixel",
                       mode="avg", output_height=output_size, output_width=output_size,
                       sampling_ratio=0, spatial_scale=spatial_scale)


def export_detector(detector, input_size: tuple[int, int], path: str | Path,
                    opset: int = 18) -> Path:
    """Write the detector graph for score maps of `input_size` (batch 1) and check it."""
    import onnx

    from ood_perception.models.s2m.detector import ScoreBoxDetectorDeploy

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deploy = ScoreBoxDetectorDeploy(detector.eval()).eval()
    sample = torch.zeros((1, *input_size))
    with torch.no_grad():
        program = torch.onnx.export(
            deploy, (sample,), input_names=[DETECTOR_INPUT], output_names=list(DETECTOR_OUTPUTS),
            opset_version=opset, dynamo=True, external_data=False,
            custom_translation_table={torch.ops.ood_perception.nms.default: _nms_onnx,
                                      torch.ops.ood_perception.roi_align.default:
                                      _roi_align_onnx})
    program.save(str(path))
    refuse_uint8_rule_violations(onnx.load(str(path)), path)
    onnx.checker.check_model(str(path))
    return path


def check_detector_onnxruntime(path: str | Path, detector, score: np.ndarray) -> str:
    """How the detector graph's detections on `score` [1, H, W] compare with PyTorch's."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores, classes = session.run(list(DETECTOR_OUTPUTS), {DETECTOR_INPUT: score})
    with torch.no_grad():
        found = detector.eval()([torch.from_numpy(score[0])])[0]
    if boxes.shape != tuple(found.boxes.shape) or not np.array_equal(classes,
                                                                      found.classes.numpy()):
        return f"{len(boxes)} detections, PyTorch {len(found.boxes)} (or other classes)"
    return (f"{len(boxes)} detections; max |box diff| "
            f"{np.abs(boxes - found.boxes.numpy()).max(initial=0.0):.3g}, max |score diff| "
            f"{np.abs(scores - found.scores.numpy()).max(initial=0.0):.3g}")
