"""Do 1920x1080 camera frames reach a subscriber in another process, over real Fast DDS?

Starts one publisher process (bgr8 frames at --rate Hz, best effort, depth 1, frame_id =
sequence number) and one subscriber process (best effort, depth 1, optionally busy for
--busy-ms per message, like a node that decodes before it hands a frame over), for each
transport configuration, and prints the fraction of frames received:

    default        Fast DDS built-in transports (shared memory + UDPv4)
    large_data     FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA (shared memory + TCP, UDP discovery)
    profile        config/fastdds_large_images.xml via FASTRTPS_DEFAULT_PROFILES_FILE

Run: .venv/bin/python benchmarks/dds_large_images.py [--seconds 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from record import add_json_argument, write_results

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "config" / "fastdds_large_images.xml"
CONFIGS = {
    "default": {},
    "large_data": {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
    "sync": {"RMW_FASTRTPS_PUBLICATION_MODE": "SYNCHRONOUS"},
    "profile": {"FASTRTPS_DEFAULT_PROFILES_FILE": str(PROFILE),
                "RMW_FASTRTPS_USE_QOS_FROM_XML": "0"},
}


def _publisher(args: argparse.Namespace) -> None:
    import numpy as np
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from ood_perception.ros.messages import image_message

    rclpy.init()
    node = rclpy.create_node("dds_probe_camera")
    publisher = node.create_publisher(Image, "/probe/image_raw", qos_profile_sensor_data)
    frame = np.random.default_rng(0).integers(0, 255, (args.height, args.width, 3), np.uint8)
    deadline = time.monotonic() + args.wait
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    period = 1.0 / args.rate
    start = time.monotonic()
    for sequence in range(int(args.seconds * args.rate)):
        header = Header(stamp=node.get_clock().now().to_msg(), frame_id=str(sequence))
        message = image_message(header, frame, "bgr8")
        publisher.publish(message)
        time.sleep(max(0.0, start + (sequence + 1) * period - time.monotonic()))
    time.sleep(1.0)
    node.destroy_node()
    rclpy.shutdown()


def _subscriber(args: argparse.Namespace) -> None:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("dds_probe_listener")
    received: set[int] = set()
    latencies: list[float] = []

    def on_image(message: Image) -> None:
        received.add(int(message.header.frame_id))
        stamp = message.header.stamp.sec + message.header.stamp.nanosec * 1e-9
        latencies.append(time.time() - stamp)
        if args.busy_ms:
            time.sleep(args.busy_ms / 1000.0)

    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    node.create_subscription(Image, "/probe/image_raw", on_image, qos)
    end = time.monotonic() + args.wait + args.seconds + 3.0
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    latencies.sort()
    print(json.dumps({"received": len(received),
                      "latency_p50_ms": 1000 * latencies[len(latencies) // 2] if latencies
                      else None}))
    node.destroy_node()
    rclpy.shutdown()


def measure(config: str, args: argparse.Namespace) -> dict:
    """One publisher and one subscriber process under `config`; the received fraction."""
    transport_variables = {name for settings in CONFIGS.values() for name in settings} | {
        "FASTDDS_DEFAULT_PROFILES_FILE"}
    env = {k: v for k, v in os.environ.items() if k not in transport_variables}
    env |= CONFIGS[config]
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    common = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
              if k in ("seconds", "rate", "width", "height", "busy_ms", "wait")]
    script = [sys.executable, __file__]
    listener = subprocess.Popen([*script, "--role", "subscriber", *common], env=env,
                                stdout=subprocess.PIPE, text=True)
    camera = subprocess.Popen([*script, "--role", "publisher", *common], env=env)
    camera.wait()
    output, _ = listener.communicate(timeout=args.wait + args.seconds + 30)
    result = json.loads(output.strip().splitlines()[-1])
    sent = int(args.seconds * args.rate)
    return {"config": config, "sent": sent, **result,
            "received_fraction": result["received"] / sent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("driver", "publisher", "subscriber"),
                        default="driver")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--busy-ms", type=float, default=0.0,
                        help="subscriber callback time per message")
    parser.add_argument("--wait", type=float, default=10.0, help="discovery timeout, s")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    add_json_argument(parser, "dds_large_images")
    args = parser.parse_args()
    if args.role == "publisher":
        _publisher(args)
        return
    if args.role == "subscriber":
        _subscriber(args)
        return
    configs, json_path = args.configs, args.json
    del args.configs, args.json, args.role
    results = [measure(config, args) for config in configs]
    for row in results:
        print(f"{row['config']:>10}: {row['received']}/{row['sent']} frames "
              f"({100 * row['received_fraction']:.0f}%), latency p50 "
              f"{row['latency_p50_ms'] or float('nan'):.1f} ms")
    write_results(json_path, "dds_large_images", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
