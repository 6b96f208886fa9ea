"""The exported-graph contract every backend and exporter shares, and the output names.

A graph takes uint8 RGB frames at its input size and returns a float32 anomaly score
(higher = more anomalous) and uint8 class ids. Its ONNX `metadata_props` describe it,
so the node needs no settings beyond the model path.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

INPUT_NAME = "image"
SCORE_NAME = "anomaly_score"
SEMANTIC_NAME = "semantic"
CONTRACT_VERSION = "1"
# Per-frame image outputs: node topics (`~/<name>`) and replayed bag topics (`<ns>/<name>`).
MASK_OUTPUT = "obstacle_mask"
OVERLAY_OUTPUT = "overlay"
IMAGE_OUTPUTS = (SCORE_NAME, MASK_OUTPUT, OVERLAY_OUTPUT, SEMANTIC_NAME)
# Label value of pixels that are neither trained on nor evaluated (Cityscapes' ignore id).
IGNORE_LABEL = 255

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
    "bus", "train", "motorcycle", "bicycle",
)
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ModelInfo:
    """What a graph says about itself; fields absent from old graphs keep these defaults."""

    input_height: int
    input_width: int
    model_name: str = "unknown"
    score_name: str = "anomaly_score"
    # Class id -> name for the `semantic` output; empty when the graph has no names.
    class_names: tuple[str, ...] = ()
    # Normalisation applied inside the graph, on the 0-255 scale (informative only).
    mean: tuple[float, ...] = IMAGENET_MEAN_255
    std: tuple[float, ...] = IMAGENET_STD_255
    # How the graph covers its input, e.g. {"mode": "sliding", "window": [518, 1036], ...}.
    tiling: dict = field(default_factory=dict)
    # Typical score range, for colour maps and threshold hints; None when unknown.
    score_range: tuple[float, float] | None = None
    # How the score is computed where that takes parameters beyond its name, e.g. DOoD's
    # {"diffusion": {"timesteps": 25, ...}, "statistics": {...}}.
    score_params: dict = field(default_factory=dict)
    version: str = CONTRACT_VERSION
    producer: str = ""

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_height, self.input_width

    def to_metadata(self) -> dict[str, str]:
        """Flat string map for ONNX `metadata_props` (structured values as JSON)."""
        props = {}
        for key, value in asdict(self).items():
            props[key] = value if isinstance(value, str) else json.dumps(value)
        return props

    @classmethod
    def from_metadata(cls, props: dict[str, str], input_size: tuple[int, int]) -> ModelInfo:
        """Parse `metadata_props`; `input_size` (from the graph's input shape) wins when set."""
        values: dict = {}
        for name, kind in cls.__annotations__.items():
            if name not in props:
                continue
            raw = props[name]
            values[name] = raw if kind == "str" else json.loads(raw)
        for key in ("class_names", "mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        if values.get("score_range") is not None:
            values["score_range"] = tuple(values["score_range"])
        values["input_height"], values["input_width"] = (int(v) for v in input_size)
        return cls(**values)


# S2M refinement graphs (SAM): the image encoder takes the contract's `image` frames; the
# prompt-and-mask decoder takes its embeddings and any number of boxes, each with the index of
# its frame in the batch.
SAM_EMBEDDINGS_NAME = "image_embeddings"
SAM_BOXES_NAME = "boxes"
SAM_BOX_BATCH_NAME = "box_batch_index"
SAM_MASKS_NAME = "low_res_masks"
SAM_IOU_NAME = "iou_predictions"
SAM_ENCODER_ROLE = "sam_image_encoder"
SAM_DECODER_ROLE = "sam_prompt_decoder"


@dataclass(frozen=True)
class SamGraphInfo:
    """What an S2M graph says about itself (ONNX `metadata_props`, JSON where structured)."""

    role: str  # SAM_ENCODER_ROLE or SAM_DECODER_ROLE
    model_name: str  # e.g. "sam-vit-b", "mobile-sam"
    # Frame size the encoder takes (the anomaly graph's input size).
    input_height: int
    input_width: int
    # SAM's square input side and the frame's size inside it (longest side = img_size).
    img_size: int = 1024
    resized_height: int = 0
    resized_width: int = 0
    embedding_size: int = 64
    version: str = CONTRACT_VERSION
    producer: str = ""

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_height, self.input_width

    @property
    def resized(self) -> tuple[int, int]:
        return self.resized_height, self.resized_width

    def to_metadata(self) -> dict[str, str]:
        return {key: value if isinstance(value, str) else json.dumps(value)
                for key, value in asdict(self).items()}

    @classmethod
    def from_metadata(cls, props: dict[str, str]) -> SamGraphInfo:
        """Parse `metadata_props`; missing or malformed keys raise KeyError / ValueError."""
        values = {name: props[name] if kind == "str" else json.loads(props[name])
                  for name, kind in cls.__annotations__.items() if name in props}
        return cls(**values)
