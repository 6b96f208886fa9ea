"""`ood-perception build-engine`: build the TensorRT engine once, before the vehicle drives."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", help="exported contract ONNX (engine is cached beside it)")
    parser.add_argument("--precision", choices=("fp16", "fp32"), default="fp16",
                        help="engine precision; fp16 keeps normalisation/softmax in fp32")
    parser.add_argument("--max-batch", type=int, default=1,
                        help="largest batch (cameras per call) the engine accepts")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")


def run(args: argparse.Namespace) -> int:
    from ood_perception.backends.tensorrt import build_engine

    path = build_engine(args.onnx, args.precision, args.max_batch, args.device, args.force)
    print(path)
    return 0
