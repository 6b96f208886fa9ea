"""The exported-graph contract every backend and exporter shares (DESIGN.md section 5).

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
