"""`ood-perception build-engine`: build the TensorRT engines a node will open, before the
vehicle drives: the anomaly graph at batch = cameras and, with S2M, SAM's two graphs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ood_perception.errors import ConfigurationError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ood_perception.backends import PRECISIONS
    from ood_perception.backends.device import DEVICE_HELP

    parser.add_argument("onnx", nargs="?", type=Path,
                        help="exported contract ONNX (engines are cached beside it); default: "
                        "the params file's model_path")
    parser.add_argument("--params-file", type=Path,
                        help="the node's params YAML: model, cameras (image_topics), precision, "
                        "device and S2M's SAM graphs, as the node reads them")
    parser.add_argument("--cameras", type=int, default=None,
                        help="cameras the node batches (engine batch; default: the params "
                        "file's image_topics, else 1)")
    parser.add_argument("--sam", type=Path, default=None,
                        help="also SAM's encoder graph (its decoder beside it), as refine s2m")
    parser.add_argument("--precision", choices=PRECISIONS["tensorrt"], default=None,
                        help="engine precision (default: the params file's, else fp16); fp16 "
                        "keeps normalisation, softmax and reductions in fp32")
    parser.add_argument("--device", default=None,
                        help=f"{DEVICE_HELP} (default: the params file's, else cuda)")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")


def node_request(args: argparse.Namespace) -> dict:
    """What the node would open, from the flags over the params file: model, cameras,
    precision, device index and SAM's graph (or None)."""
    from ood_perception.backends.device import parse_device
    from ood_perception.ros.params_file import read_params

    params = read_params(args.params_file) if args.params_file else {}
    model = args.onnx or (Path(params["model_path"]) if params.get("model_path") else None)
    if model is None:
        raise ConfigurationError("give the ONNX graph, or --params-file with model_path")
    topics = params.get("image_topics") or []
    cameras = args.cameras if args.cameras is not None else max(len(topics), 1)
    if cameras < 1:
        raise ConfigurationError(f"--cameras must be >= 1, got {cameras}")
    device = parse_device(args.device or params.get("device") or "cuda", "--device")
    if not device.is_cuda:
        raise ConfigurationError(f"TensorRT engines build on cuda, not --device {device}")
    sam = args.sam
    if sam is None and params.get("refine") == "s2m" and params.get("sam_model_path"):
        sam = Path(params["sam_model_path"])
    return {"model_path": model, "precision": args.precision or params.get("precision") or "fp16",
            "cameras": cameras, "device": device.index or 0, "sam_model_path": sam}


def run(args: argparse.Namespace) -> int:
    from ood_perception.backends.tensorrt import build_node_engines

    for path in build_node_engines(**node_request(args), force=args.force):
        print(path)
    return 0
