"""The node as its own process, fed 1920x1080 bgr8 frames from this process over Fast DDS.

Reports how many frames were answered, the end-to-end latency (header stamp -> score map
received here) and the node's own per-stage times from `/diagnostics`. The model is any
contract ONNX; without `--model` a small torch model is exported first (random weights,
ViT-S UEM single window), so the figures show the node's overhead around a real network.

Run: .venv/bin/python benchmarks/node_1080p.py [--model m.onnx] [--rate 10] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from record import add_json_argument, write_results

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "config" / "fastdds_large_images.xml"


def _default_model(folder: Path) -> Path:
    from ood_perception.export.onnx import export_onnx
    from ood_perception.models.registry import ExportRequest, build_model

    deploy = build_model(ExportRequest(model="uem-dinov2-s", random_init=True,
                                       input_size=(252, 448), window=(252, 448),
                                       single_window=True))
    return export_onnx(deploy, folder / "uem_s_252x448.onnx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="contract ONNX (default: exported ViT-S UEM)")
    parser.add_argument("--rate", type=float, default=10.0, help="camera frames per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    add_json_argument(parser, "node_1080p")
    args = parser.parse_args()

    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "FASTRTPS_DEFAULT_PROFILES_FILE":
           str(PROFILE), "FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)}
    os.environ.update({k: v for k, v in env.items() if k not in os.environ})
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from ood_perception.ros.messages import image_message, stamp_seconds

    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or _default_model(Path(scratch))
        node_process = subprocess.Popen(
            [sys.executable, "-m", "ood_perception.ros.node", "--ros-args", "-p",
             f"model_path:={model}", "-p", "image_topics:=['/bench/image_raw']", "-p",
             "score_threshold:=0.0"],
            env=os.environ.copy())
        rclpy.init()
        camera = rclpy.create_node("bench_camera")
        latencies: list[float] = []
        diagnostics: list[dict] = []
        lock = threading.Lock()

        def on_score(message: Image) -> None:
            with lock:
                latencies.append(time.time() - stamp_seconds(message.header))

        def on_diagnostics(message: DiagnosticArray) -> None:
            for status in message.status:
                if ": camera " in status.name:  # "<node>: camera <camera_name>"
                    diagnostics.append({v.key: v.value for v in status.values})

        camera.create_subscription(Image, "/ood_perception_node/anomaly_score", on_score, 10)
        camera.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
        publisher = camera.create_publisher(Image, "/bench/image_raw", qos_profile_sensor_data)
        spinner = threading.Thread(target=rclpy.spin, args=(camera,), daemon=True)
        spinner.start()
        deadline = time.monotonic() + 120
        while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
            if node_process.poll() is not None:
                raise SystemExit(f"the node exited with code {node_process.returncode}")
            time.sleep(0.1)
        frame = np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), np.uint8)
        frames = int(args.seconds * args.rate)
        start = time.monotonic()
        for index in range(frames):
            header = Header(stamp=camera.get_clock().now().to_msg(), frame_id=str(index))
            publisher.publish(image_message(header, frame, "bgr8"))
            time.sleep(max(0.0, start + (index + 1) / args.rate - time.monotonic()))
        time.sleep(2.5)
        node_process.send_signal(signal.SIGINT)
        node_process.wait(timeout=30)
        with lock:
            measured = np.array(latencies) * 1000.0
        last = diagnostics[-1] if diagnostics else {}
        result = {
            "model": str(model.name), "rate_hz": args.rate, "frames_sent": frames,
            "frames_answered": int(measured.size),
            "latency_ms": {f"p{p}": float(np.percentile(measured, p)) for p in (50, 90, 99)}
            if measured.size else {},
            "node_stage_mean_ms": {k.removesuffix("_mean_ms"): float(v) for k, v in last.items()
                                   if k.endswith("_mean_ms")},
            "node_drops": {k: v for k, v in last.items() if k.startswith("drops/")},
            "node_exit_code": node_process.returncode,
        }
        camera.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps(result, indent=2))
    write_results(args.json, "node_1080p", {"seconds": args.seconds, **result})


if __name__ == "__main__":
    main()
