"""A camera client written apart from ood_perception (plain rclpy and numpy, no project code).

Publishes --cameras bgr8 cameras (1920x1080 by default) at --rate Hz, best effort, depth 1,
all cameras on the same tick as hardware-synchronised cameras do, and subscribes to each
camera's anomaly score and obstacle mask. frame_id carries the frame's sequence number, so
each answer is matched to the frame it belongs to. Prints START and STOP around the measured
part (after --warmup seconds) so a runner can sample CPU use in between, then writes JSON:
frames sent per camera, which came back with score and mask, latencies, and the node's
/diagnostics values at START and at the end.

Run under the Fast DDS profile the node uses (FASTRTPS_DEFAULT_PROFILES_FILE), e.g.
    python benchmarks/camera_client.py --cameras 1 --seconds 30 --json client.json
"""

from __future__ import annotations

import argparse
import array
import json
import sys
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

CAMERA_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                        reliability=ReliabilityPolicy.BEST_EFFORT)
ANSWER_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                        reliability=ReliabilityPolicy.BEST_EFFORT)
OUTPUTS = ("anomaly_score", "obstacle_mask")


def street(height: int, width: int, camera: int) -> np.ndarray:
    """bgr8 frame: grey shading, a darker road half and one magenta box that moves with the
    camera index (an obstacle for a score that likes magenta)."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = np.linspace(90, 160, width, dtype=np.uint8)[None, :, None]
    frame[height // 2:] //= 2
    top, left = height * 5 // 8, width // 8 + camera * width // 10
    frame[top:top + height // 8, left:left + width // 12] = (255, 0, 255)  # B, G, R
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=1)
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second per camera")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured publishing time")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds published first, "
                        "not counted")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--node", default="/ood_perception_node",
                        help="the node's name: outputs are <node>/<output> for one camera, "
                        "<node>/cam<i>/<output> for several")
    parser.add_argument("--wait", type=float, default=120.0,
                        help="seconds to wait for the node's subscriptions")
    parser.add_argument("--json", required=True, help="write the results here")
    args = parser.parse_args(argv)

    rclpy.init()
    node = rclpy.create_node("bench_camera_client")
    received: dict[str, dict[tuple[int, int], float]] = {name: {} for name in OUTPUTS}
    diagnostics: dict[str, dict[str, str]] = {}  # the node's status per camera, by name
    lock = threading.Lock()

    def on_output(camera: int, output: str):
        def callback(message: Image) -> None:
            now = time.time()
            stamp = message.header.stamp.sec + message.header.stamp.nanosec * 1e-9
            with lock:
                received[output][(camera, int(message.header.frame_id))] = now - stamp
        return callback

    def on_diagnostics(message: DiagnosticArray) -> None:
        for status in message.status:
            if ": camera " in status.name:
                with lock:
                    diagnostics[status.name] = {value.key: value.value
                                                for value in status.values}

    publishers, messages = [], []
    for camera in range(args.cameras):
        prefix = args.node if args.cameras == 1 else f"{args.node}/cam{camera}"
        for output in OUTPUTS:
            node.create_subscription(Image, f"{prefix}/{output}", on_output(camera, output),
                                     ANSWER_QOS)
        publishers.append(node.create_publisher(Image, f"/cam{camera}/image_raw", CAMERA_QOS))
        # One message per camera, reused: only its header changes from frame to frame.
        message = Image(height=args.height, width=args.width, encoding="bgr8", is_bigendian=0,
                        step=args.width * 3, check_fields=True)
        message.data = array.array("B", street(args.height, args.width, camera).tobytes())
        messages.append(message)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    deadline = time.monotonic() + args.wait
    while any(p.get_subscription_count() == 0 for p in publishers):
        if time.monotonic() > deadline:
            print("the node never subscribed", file=sys.stderr)
            return 1
        time.sleep(0.1)

    period = 1.0 / args.rate
    warmup = round(args.warmup * args.rate)
    total = warmup + round(args.seconds * args.rate)
    start = time.monotonic()
    at_start: dict[str, dict[str, str]] = {}
    for sequence in range(total):
        if sequence == warmup:
            print("START", flush=True)
            with lock:
                at_start = dict(diagnostics)
        stamp = node.get_clock().now().to_msg()
        for publisher, message in zip(publishers, messages, strict=True):
            message.header.stamp = stamp
            message.header.frame_id = str(sequence)
            publisher.publish(message)
        time.sleep(max(0.0, start + (sequence + 1) * period - time.monotonic()))
    print("STOP", flush=True)
    time.sleep(2.0)  # answers in flight
    with lock:
        answers = {name: dict(found) for name, found in received.items()}
        last_diagnostics = dict(diagnostics)
    executor.shutdown(timeout_sec=1.0)
    node.destroy_node()
    rclpy.try_shutdown()

    counted = [(camera, sequence) for camera in range(args.cameras)
               for sequence in range(warmup, total)]
    both = [key for key in counted if all(key in answers[name] for name in OUTPUTS)]
    latencies = np.array([max(answers[name][key] for name in OUTPUTS) for key in both]) * 1000
    result = {
        "cameras": args.cameras, "rate_hz": args.rate, "size": [args.height, args.width],
        "frames_sent": len(counted), "answered_with_both": len(both),
        "answered_share": len(both) / len(counted),
        "answered_share_per_camera": [
            sum(1 for key in both if key[0] == camera) / (total - warmup)
            for camera in range(args.cameras)],
        "received": {name: sum(1 for key in counted if key in answers[name])
                     for name in OUTPUTS},
        "latency_ms": {f"p{p}": float(np.percentile(latencies, p)) for p in (50, 90, 99)}
        if latencies.size else {},
        "node_diagnostics": last_diagnostics,
        "node_diagnostics_at_start": at_start,
    }
    with open(args.json, "w") as file:
        json.dump(result, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
