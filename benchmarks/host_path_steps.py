"""Each host step of one 1080p bgr8 frame into a 518x924 graph, the former way and this way.

ROS-free except the message build (sensor_msgs only). The former way is the OpenCV calls the
frame path made before: decode to RGB at full size, INTER_AREA to the model size, score and
classes back to full size, threshold and label at full size, copy each map into a message.
This way: `camera_frame` (a checked view), the whole-factor box + bilinear shrink with the
colour swap on the small image, only the maps asked for, the model-map postprocess, maps
written into message memory. Last, three cameras one after the other ("former": what the
pipeline does) against a thread per camera. Fastest and median of --repeat runs in one
thread (the node's worker); on a shared machine the fastest is the step's own cost, the
median what it costs among the other work.

Run: .venv/bin/python benchmarks/host_path_steps.py [--repeat 50] [--json steps.json]
"""

from __future__ import annotations

import argparse
import array
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from record import add_json_argument, write_results

from ood_perception.core.frames import camera_frame
from ood_perception.core.message_buffers import message_array, message_bytes
from ood_perception.core.postprocess import PostprocessConfig, postprocess, postprocess_model_map
from ood_perception.core.preprocess import make_batch, resize_classes, resize_frame, resize_score

FRAME, MODEL = (1080, 1920), (518, 924)


def _times_ms(step: Callable[[], object], repeat: int) -> dict[str, float]:
    step()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000.0)
    return {"min": min(times), "median": statistics.median(times)}


def _scene() -> tuple[bytes, np.ndarray, np.ndarray]:
    """bgr8 camera bytes, a 518x924 score with one obstacle, and classes (road below)."""
    rng = np.random.default_rng(0)
    bgr = rng.integers(60, 200, (*FRAME, 3), dtype=np.uint8)
    score = rng.random(MODEL, dtype=np.float32) * 0.3
    score[300:360, 400:470] = 0.9
    classes = np.zeros(MODEL, np.uint8)
    classes[: MODEL[0] // 2] = 10
    return bgr.tobytes(), score, classes


def _image_message(pixels: np.ndarray, encoding: str, zero_copy: bool):
    """A sensor_msgs/Image as the node builds it (copy) or from message memory (no copy)."""
    from sensor_msgs.msg import Image

    if zero_copy:
        message = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                        step=pixels.strides[0], check_fields=True)
        message.data = message_bytes(pixels)
        return message
    data = array.array("B")
    data.frombytes(memoryview(np.ascontiguousarray(pixels)).cast("B"))
    message = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                    step=pixels.strides[0])
    message.data = data
    return message


def measure(repeat: int) -> dict:
    data, score, classes = _scene()
    config = PostprocessConfig(0.5, min_obstacle_area=100)
    step = FRAME[1] * 3
    former_rgb = cv2.cvtColor(np.frombuffer(data, np.uint8).reshape(*FRAME, 3),
                              cv2.COLOR_BGR2RGB)
    former_score = resize_score(score, FRAME)
    full_classes = resize_classes(classes, FRAME)
    frame = camera_frame("bgr8", *FRAME, step, data)
    steps = {
        "decode": {
            "former": lambda: cv2.cvtColor(np.frombuffer(data, np.uint8).reshape(*FRAME, 3),
                                           cv2.COLOR_BGR2RGB),
            "now": lambda: camera_frame("bgr8", *FRAME, step, data)},
        "preprocess": {
            "former": lambda: cv2.resize(former_rgb, MODEL[::-1], interpolation=cv2.INTER_AREA),
            "now": lambda: make_batch([frame], MODEL)},
        "score_back_frame_size": {
            "former": lambda: resize_score(score, FRAME),
            "now": lambda: resize_score(score, FRAME, out=message_array(FRAME, np.float32))},
        "score_at_model_size": {
            "now": lambda: message_array(MODEL, np.float32).__setitem__(Ellipsis, score)},
        "classes_back": {
            "former": lambda: resize_classes(classes, FRAME),
            "now (only when subscribed)": lambda: resize_classes(
                classes, FRAME, out=message_array(FRAME, np.uint8))},
        "postprocess": {
            "former": lambda: postprocess(former_score, None, config),
            "now": lambda: postprocess_model_map(score, None, FRAME, config,
                                                 mask=message_array(FRAME, np.uint8))},
        "postprocess_no_obstacle": {
            "former": lambda: postprocess(former_score * 0.1, None, config),
            "now": lambda: postprocess_model_map(score * 0.1, None, FRAME, config)},
        "postprocess_gated": {
            "former": lambda: postprocess(former_score, full_classes, PostprocessConfig(
                0.5, gating_classes=(0,), gating_dilation=10)),
            "now": lambda: postprocess_model_map(score, classes, FRAME, PostprocessConfig(
                0.5, gating_classes=(0,), gating_dilation=10))},
    }
    try:
        import sensor_msgs.msg  # noqa: F401
    except ImportError:
        pass
    else:
        score_full = resize_score(score, FRAME, out=message_array(FRAME, np.float32))
        score_small = message_array(MODEL, np.float32)
        score_small[...] = score
        mask = message_array(FRAME, np.uint8)
        steps["build_score_1080p_32FC1"] = {
            "former": lambda: _image_message(score_full, "32FC1", False),
            "now": lambda: _image_message(score_full, "32FC1", True)}
        steps["build_score_518x924_32FC1"] = {
            "former": lambda: _image_message(score_small, "32FC1", False),
            "now": lambda: _image_message(score_small, "32FC1", True)}
        steps["build_mask_1080p_mono8"] = {
            "former": lambda: _image_message(mask, "mono8", False),
            "now": lambda: _image_message(mask, "mono8", True)}
    # Three cameras: one after the other (as the pipeline does) or a thread per camera.
    frames = [camera_frame("bgr8", *FRAME, step, data) for _ in range(3)]
    pool = ThreadPoolExecutor(len(frames))

    def resize_one(item: tuple[int, np.ndarray]) -> None:
        index, batch = item
        cv2.cvtColor(resize_frame(frames[index].pixels, MODEL), cv2.COLOR_BGR2RGB,
                     dst=batch[index])

    def threaded_batch() -> np.ndarray:
        batch = np.empty((len(frames), *MODEL, 3), np.uint8)
        list(pool.map(resize_one, [(index, batch) for index in range(len(frames))]))
        return batch

    def maps_one(_: int) -> None:
        postprocess_model_map(score, None, FRAME, config, mask=message_array(FRAME, np.uint8))
        message_array(MODEL, np.float32)[...] = score

    steps["3_cameras_preprocess"] = {"former": lambda: make_batch(frames, MODEL),
                                     "threads": threaded_batch}
    steps["3_cameras_maps_and_postprocess"] = {
        "former": lambda: [maps_one(index) for index in range(len(frames))],
        "threads": lambda: list(pool.map(maps_one, range(len(frames))))}
    try:
        return {name: {way: _times_ms(run, repeat) for way, run in ways.items()}
                for name, ways in steps.items()}
    finally:
        pool.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    add_json_argument(parser, "host_path_steps")
    args = parser.parse_args(argv)
    cv2.setNumThreads(int(os.environ.get("OPENCV_THREADS", cv2.getNumThreads())))
    results = {"opencv_threads": cv2.getNumThreads(), "load_average_1min": os.getloadavg()[0],
               "steps_ms": measure(args.repeat)}
    print(f"{'step (ms: fastest / median)':32s} former          now")
    for name, ways in results["steps_ms"].items():
        cells = [f"{ways[way]['min']:6.2f} / {ways[way]['median']:6.2f}" if way in ways
                 else f"{'-':>15s}" for way in ("former",)]
        now = [f"{ms['min']:6.2f} / {ms['median']:6.2f}" for way, ms in ways.items()
               if way != "former"]
        print(f"{name:32s} " + "  ".join(cells + now))
    print(f"load average {results['load_average_1min']:.2f}, opencv threads "
          f"{results['opencv_threads']}")
    write_results(args.json, "host_path_steps", {"repeat": args.repeat, **results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
