"""`ood-perception demo`: the product end to end on the embedded demo model, no downloads.

1. exports the embedded `uem-demo` checkpoint to `DIR/uem_demo.onnx` (random weights, said
   loudly, when the asset is missing);
2. generates a held-out synthetic drive (anomaly families never used in training) as a
   rosbag plus label PNGs under `DIR/sequence/`;
3. starts `ood_perception_node` as its own process and plays the bag into it over DDS, one
   frame at a time (the node keeps only the newest frame), collecting score, mask and
   overlay by header stamp;
4. writes the overlays as PNGs and `DIR/demo.gif`;
5. prints AP / FPR95 of the received score maps against the labels, rate and latency.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ood_perception.contract import IGNORE_LABEL, MASK_OUTPUT, OVERLAY_OUTPUT, SCORE_NAME
from ood_perception.errors import ConfigurationError

NODE = "/ood_perception_node"
TOPIC = "/demo/camera/image_raw"
OUTPUTS = (SCORE_NAME, MASK_OUTPUT, OVERLAY_OUTPUT)
READY_TIMEOUT_S = 120.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="demo_out", help="folder for every demo file")
    parser.add_argument("--frames", type=int, default=30, help="frames in the drive")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic drive")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of the drive")
    parser.add_argument("--frame-timeout", type=float, default=30.0,
                        help="seconds to wait for the node's answer to one frame")


def export_model(output: Path) -> tuple[Path, str]:
    """The demo ONNX and a note on where its weights came from."""
    from ood_perception.export.onnx import check_onnxruntime, export_onnx, sample_images
    from ood_perception.models.registry import ExportRequest, build_model
    from ood_perception.models.uem.demo import DEMO_CAMERA, DEMO_CHECKPOINT

    embedded = DEMO_CHECKPOINT.is_file()
    request = ExportRequest(model="uem-demo", input_size=DEMO_CAMERA, random_init=not embedded)
    deploy = build_model(request)
    path = export_onnx(deploy, output / "uem_demo.onnx")
    diff = check_onnxruntime(path, deploy, sample_images(deploy.info, batch=1))
    if embedded:
        note = f"embedded demo weights {DEMO_CHECKPOINT.name}"
    else:
        note = (f"RANDOM WEIGHTS: the embedded demo checkpoint {DEMO_CHECKPOINT} is missing, "
                "so scores are meaningless (see docs/demo_model.md to train it)")
    return path, f"{note}; onnxruntime vs torch max |diff| {diff:.2g}"


def demo_params(output: Path, model: Path) -> Path:
    """The node's params file for the demo: the exported model, the demo camera, lockstep QoS."""
    from ood_perception.ros.params_file import write_params

    path = output / "demo_params.yaml"
    write_params(path, {"model_path": str(model.resolve()), "image_topics": [TOPIC],
                        "input_qos": "reliable", "publish_overlay": True})
    return path


def start_node(params: Path, log: Path) -> subprocess.Popen:
    """The node process; returns once it logged "ready" (ConfigurationError if it died)."""
    handle = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "ood_perception.ros.node", "--ros-args", "--params-file",
         str(params)],
        stdout=handle, stderr=subprocess.STDOUT, env=os.environ.copy())
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if "ready" in log.read_text():
            return process
        if process.poll() is not None:
            tail = log.read_text().strip().splitlines()[-5:]
            raise ConfigurationError(f"the node exited with code {process.returncode}: "
                                     + " | ".join(tail))
        time.sleep(0.2)
    stop_node(process)
    raise ConfigurationError(f"the node did not log 'ready' within {READY_TIMEOUT_S:.0f} s; "
                             f"see {log}")


def stop_node(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def write_visuals(output: Path, answers: list[dict], fps: float) -> Path | None:
    """Overlay PNGs under `overlays/` and an animated `demo.gif`; the GIF path."""
    import cv2
    from PIL import Image as PILImage

    folder = output / "overlays"
    folder.mkdir(parents=True, exist_ok=True)
    pictures = []
    for index, answer in enumerate(answers):
        overlay = answer["outputs"].get(OVERLAY_OUTPUT)
        if overlay is None:
            continue
        bgr = overlay
        cv2.imwrite(str(folder / f"frame_{index:05d}.png"), bgr)
        pictures.append(PILImage.fromarray(np.ascontiguousarray(bgr[..., ::-1])))
    if not pictures:
        return None
    gif = output / "demo.gif"
    pictures[0].save(gif, save_all=True, append_images=pictures[1:],
                     duration=int(1000 / fps), loop=0)
    return gif


def score_answers(answers: list[dict], sequence: Path) -> dict:
    """AP / FPR95 / AUROC of the received scores and IoU of the received masks vs labels."""
    from ood_perception.evaluation.datasets import read_label
    from ood_perception.evaluation.pixel_metrics import PixelMetrics

    listing = json.loads((sequence / "sequence.json").read_text())["frames"]
    names = {(s["stamp_ns"] // 10**9, s["stamp_ns"] % 10**9): s["name"] for s in listing}
    metrics = PixelMetrics()
    hits = unions = 0
    for answer in answers:
        outputs = answer["outputs"]
        if SCORE_NAME not in outputs:
            continue
        label = read_label(sequence / "labels" / f"{names[tuple(answer['stamp'])]}.png")
        metrics.update(outputs[SCORE_NAME], label)
        if MASK_OUTPUT in outputs:
            mask = outputs[MASK_OUTPUT] > 0
            valid = label != IGNORE_LABEL
            hits += int((mask & (label == 1) & valid).sum())
            unions += int(((mask | (label == 1)) & valid).sum())
    summary = metrics.summary()
    return {"ap": summary["ap"], "fpr95": summary["fpr95"], "auroc": summary["auroc"],
            "mask_iou": hits / unions if unions else float("nan"),
            "scored_frames": summary["frames"]}


def run_demo(args: argparse.Namespace) -> dict:
    """The whole demo; the figures it prints, as a dict."""
    from ood_perception.synthetic.scenes import make_sequence, write_sequence

    if args.frames < 1:
        raise ConfigurationError(f"--frames must be at least 1, got {args.frames}")
    if not (math.isfinite(args.fps) and args.fps > 0):
        raise ConfigurationError(f"--fps must be a positive number, got {args.fps}")
    if importlib.util.find_spec("rclpy") is None:
        raise ConfigurationError("the demo runs the ROS node and needs rclpy: source a ROS 2 "
                                 "distribution or pip install '.[ros]'")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model, note = export_model(output)
    print(f"[1/5] exported {model} ({note}) in {time.perf_counter() - start:.0f} s", flush=True)
    sequence = output / "sequence"
    if sequence.exists():
        import shutil

        shutil.rmtree(sequence)
    frames = make_sequence(args.seed, args.frames, anomaly_split="heldout", fps=args.fps)
    write_sequence(sequence, frames, TOPIC, args.fps, seed=args.seed)
    print(f"[2/5] wrote a {args.frames}-frame held-out drive: {sequence / 'bag'} + labels",
          flush=True)
    params = demo_params(output, model)
    from ood_perception.ros.lockstep import play_bag

    process = start_node(params, output / "node.log")
    try:
        print(f"[3/5] node ready (params {params}); playing the bag through DDS", flush=True)
        answers, seconds = play_bag(sequence / "bag", TOPIC, NODE, OUTPUTS, args.frame_timeout)
    finally:
        stop_node(process)
    missing = sum(len(a["outputs"]) < len(OUTPUTS) for a in answers)
    gif = write_visuals(output, answers, args.fps)
    print(f"[4/5] overlays in {output / 'overlays'}, animation {gif}", flush=True)
    figures = score_answers(answers, sequence)
    latencies = np.array([a["latency_ms"] for a in answers])
    figures.update(weights=note, frames=len(answers), incomplete_frames=missing,
                   rate_hz=len(answers) / seconds, latency_p50_ms=float(np.median(latencies)),
                   latency_p90_ms=float(np.percentile(latencies, 90)),
                   total_seconds=time.perf_counter() - start)
    (output / "demo_results.json").write_text(json.dumps(figures, indent=1))
    return figures


def run(args: argparse.Namespace) -> int:
    figures = run_demo(args)
    print(f"[5/5] held-out anomalies over DDS: AP {figures['ap'] * 100:.1f}, FPR95 "
          f"{figures['fpr95'] * 100:.1f}, AUROC {figures['auroc'] * 100:.1f}, obstacle mask "
          f"IoU {figures['mask_iou'] * 100:.1f} on {figures['scored_frames']} frames; "
          f"{figures['rate_hz']:.1f} frames/s in lockstep, latency p50 "
          f"{figures['latency_p50_ms']:.0f} ms, p90 {figures['latency_p90_ms']:.0f} ms; "
          f"total {figures['total_seconds']:.0f} s")
    if figures["incomplete_frames"]:
        print(f"warning: {figures['incomplete_frames']} frames missed an output "
              f"(see {Path(args.output) / 'node.log'})", file=sys.stderr)
    if figures["weights"].startswith("RANDOM"):
        print(f"warning: {figures['weights']}", file=sys.stderr)
    return 0
