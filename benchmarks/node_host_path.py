"""The node's host path over Fast DDS: 1, 3 and 6 cameras of 1080p bgr8 at 30 Hz.

For each camera count, starts the node as its own process with a trivial contract graph at
--input-size (518x924: inference costs almost nothing, so what is measured is everything
around it) and `benchmarks/camera_client.py` as another process; both use the shipped
large-image Fast DDS profile. Reports the share of frames that came back with score and
mask, latency percentiles, the node's stage means from /diagnostics (decode, preprocess,
inference, resize_back, postprocess, message_build, publish; averaged over the cameras),
the CPU use of the node, the client and the whole machine (the
rest is other work on it), and optionally a py-spy profile of the node (--py-spy PATH).
--node-script runs a changed node instead, with the same parameters, to compare.

Run: .venv/bin/python benchmarks/node_host_path.py [--cameras 1 3 6] [--seconds 30]
         [--json out.json] [--py-spy /path/to/py-spy]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import add_json_argument, write_results

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "config" / "fastdds_large_images.xml"
STAGES = ("decode", "preprocess", "inference", "resize_back", "postprocess", "message_build",
          "publish")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _trivial_graph(folder: Path, size: tuple[int, int]) -> Path:
    """A contract graph that costs almost nothing: score = (R - G) / 255 (magenta ~1, grey 0),
    semantic = the G channel, at `size` with a dynamic batch."""
    import onnx
    from onnx import TensorProto, helper

    from ood_perception.contract import INPUT_NAME, SCORE_NAME, SEMANTIC_NAME, ModelInfo

    # Split, not Gather or Slice on the channel axis: 1.6 ms here where those take 10-20.
    nodes = [
        helper.make_node("Split", [INPUT_NAME, "sizes"], ["r", "g", "b"], axis=3),
        helper.make_node("Squeeze", ["r", "axis"], ["red"]),
        helper.make_node("Squeeze", ["g", "axis"], [SEMANTIC_NAME]),
        helper.make_node("Cast", ["red"], ["red_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", [SEMANTIC_NAME], ["green_f"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["red_f", "green_f"], ["difference"]),
        helper.make_node("Mul", ["difference", "scale"], [SCORE_NAME]),
    ]
    constants = [helper.make_tensor("sizes", TensorProto.INT64, [3], [1, 1, 1]),
                 helper.make_tensor("axis", TensorProto.INT64, [1], [3]),
                 helper.make_tensor("scale", TensorProto.FLOAT, [], [1.0 / 255.0])]
    graph = helper.make_graph(
        nodes, "trivial_contract",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", *size, 3])],
        [helper.make_tensor_value_info(SCORE_NAME, TensorProto.FLOAT, ["batch", *size]),
         helper.make_tensor_value_info(SEMANTIC_NAME, TensorProto.UINT8, ["batch", *size])],
        initializer=constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    info = ModelInfo(input_height=size[0], input_width=size[1], model_name="trivial",
                     score_name="red_minus_green", score_range=(0.0, 1.0),
                     producer="benchmarks/node_host_path.py")
    helper.set_model_props(model, info.to_metadata())
    onnx.checker.check_model(model, full_check=True)
    path = folder / f"trivial_{size[0]}x{size[1]}.onnx"
    onnx.save(model, str(path))
    return path


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def _machine_busy_seconds() -> tuple[float, float]:
    """(busy CPU seconds, all CPU seconds) of the machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


def _hot_functions(raw_profile: Path, top: int = 25) -> list[tuple[str, float]]:
    """py-spy raw (collapsed) stacks -> the functions holding the most samples, inclusive, as
    shares of the worker thread's samples."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw_profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "_work (" not in stack:  # the node's worker thread only
            continue
        total += int(count)
        for frame in set(stack.split(";")):
            inclusive[frame] += int(count)
    return [(frame, count / total) for frame, count in inclusive.most_common(top)] if total \
        else []


def run_cameras(cameras: int, model: Path, args: argparse.Namespace, scratch: Path) -> dict:
    topics = "[" + ",".join(f"'/cam{i}/image_raw'" for i in range(cameras)) + "]"
    node_entry = [args.node_script] if args.node_script else ["-m", "ood_perception.ros.node"]
    node_command = [sys.executable, *node_entry, "--ros-args",
                    "-p", f"model_path:={model}", "-p", f"image_topics:={topics}",
                    "-p", "score_threshold:=0.5",
                    "-p", f"score_resolution:={args.score_resolution}"]
    profile = scratch / f"profile_{cameras}.txt"
    if args.py_spy:
        node_command = [args.py_spy, "record", "--rate", "50", "--format", "raw", "--threads",
                        "--output", str(profile), "--", *node_command]
    node_log = scratch / f"node_{cameras}.log"
    with node_log.open("w") as log:
        node = subprocess.Popen(node_command, env=os.environ.copy(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    answers = scratch / f"client_{cameras}.json"
    client = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "camera_client.py"), "--cameras",
         str(cameras), "--rate", str(args.rate), "--seconds", str(args.seconds), "--json",
         str(answers)], env=os.environ.copy(), stdout=subprocess.PIPE, text=True)
    node_pid = node.pid
    if args.py_spy:  # the node is py-spy's child
        time.sleep(1.0)
        children = Path(f"/proc/{node.pid}/task/{node.pid}/children").read_text().split()
        node_pid = int(children[0])
    samples = {}
    for line in client.stdout:
        if line.strip() in ("START", "STOP"):
            samples[line.strip()] = (time.monotonic(), _cpu_seconds(node_pid),
                                     _cpu_seconds(client.pid), _machine_busy_seconds(),
                                     os.getloadavg()[0])
    client.wait()
    os.killpg(node.pid, signal.SIGINT)
    node.wait(timeout=60)
    if client.returncode != 0 or set(samples) != {"START", "STOP"}:
        raise SystemExit(f"the camera client failed (exit {client.returncode}); the node's "
                         f"log ends:\n{node_log.read_text()[-2000:]}")
    (t0, node0, client0, (busy0, all0), load0), (t1, node1, client1, (busy1, all1), load1) = (
        samples["START"], samples["STOP"])
    result = json.loads(answers.read_text())
    statuses = result.pop("node_diagnostics")  # one per camera
    before = result.pop("node_diagnostics_at_start")

    def counted(key: str) -> int:  # over the measured part, from the node's own counters
        return sum(int(values.get(key, 0)) - int(before.get(name, {}).get(key, 0))
                   for name, values in statuses.items())

    def mean(key: str) -> float:  # of the cameras' own means
        found = [float(values[key]) for values in statuses.values() if key in values]
        return sum(found) / len(found) if found else float("nan")

    wall = t1 - t0
    result.update({
        "node_stage_mean_ms": {stage: mean(f"{stage}_mean_ms") for stage in STAGES},
        # Host time: every stage but inference, what the node spends around the model.
        "node_host_ms": sum(mean(f"{stage}_mean_ms") for stage in STAGES if stage != "inference"),
        "node_rate_hz_per_camera": mean("rate_hz"),
        # Frames the node's worker processed and frames replaced while it was busy; what the
        # client sent beyond both never reached the node's subscription in time (DDS).
        "node_processed": counted("frames_total"),
        "node_superseded": counted("drops/superseded"),
        "node_drops": {key: counted(key) for key in sorted(
            {key for values in statuses.values() for key in values
             if key.startswith("drops/")})},
        # CPU time per frame holds up better than rates on a shared machine: the node's per
        # frame that reached it (processed or superseded), the client's per frame sent.
        "node_cpu_ms_per_frame": 1000 * (node1 - node0) / max(
            counted("frames_total") + counted("drops/superseded"), 1),
        "client_cpu_ms_per_frame": 1000 * (client1 - client0) / result["frames_sent"],
        "cpu_percent": {  # of one core; the machine's is of all cores
            "node": 100 * (node1 - node0) / wall, "client": 100 * (client1 - client0) / wall,
            "machine": 100 * (busy1 - busy0) / (all1 - all0),
            "others_cores": ((busy1 - busy0) - (node1 - node0) - (client1 - client0)) / wall},
        "load_average_1min": [load0, load1],
    })
    if args.py_spy and profile.exists():
        result["node_worker_hot_functions"] = _hot_functions(profile)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 3, 6])
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second per camera")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per case")
    parser.add_argument("--input-size", type=int, nargs=2, default=[518, 924],
                        metavar=("HEIGHT", "WIDTH"), help="the trivial graph's input size")
    parser.add_argument("--score-resolution", choices=("frame", "model"), default="frame",
                        help="the node's score_resolution parameter")
    parser.add_argument("--py-spy", help="py-spy executable: profile the node's worker")
    parser.add_argument("--node-script", help="run this script instead of the node module "
                        "(a changed node to compare, same parameters)")
    add_json_argument(parser, "node_host_path")
    args = parser.parse_args(argv)
    os.environ.update({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                       "FASTRTPS_DEFAULT_PROFILES_FILE": str(PROFILE),
                       "FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)})
    results = {"score_resolution": args.score_resolution,
               "input_size": args.input_size, "cases": []}
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        model = _trivial_graph(scratch, tuple(args.input_size))
        for cameras in args.cameras:
            case = run_cameras(cameras, model, args, scratch)
            results["cases"].append(case)
            print(json.dumps(case, indent=2), flush=True)
    write_results(args.json, "node_host_path", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
