"""`ood-perception make-scenes`: synthetic labelled road scenes, or a drive as a rosbag.

Scenes go to `images/`, `labels/` (anomaly 0/1/255) and `semantic/` (Cityscapes train ids),
the `folder` layout `evaluate --dataset` reads. With --bag the frames are one drive (camera
moving forward) and also go to `bag/` as sensor_msgs/Image with header stamps;
`sequence.json` lists each frame's name, stamp and obstacles (where each stands in the
vehicle frame), and the camera's calibration.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from ood_perception.cli.arguments import image_size
from ood_perception.errors import ConfigurationError

SPLITS = ("heldout", "train", "none")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, help="folder to write (created)")
    parser.add_argument("--count", type=int, default=100, help="number of frames")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data)")
    parser.add_argument("--anomalies", choices=SPLITS, default="heldout",
                        help="anomaly families on the road: heldout (never used in training, "
                        "default), train (the UEM outlier families) or none")
    parser.add_argument("--min-anomalies", type=int, default=1, help="fewest per scene")
    parser.add_argument("--max-anomalies", type=int, default=3, help="most per scene")
    parser.add_argument("--size", type=image_size, default=(224, 448), help="frame HxW")
    parser.add_argument("--bag", action="store_true",
                        help="one drive instead of independent scenes, also written as a rosbag")
    parser.add_argument("--topic", default="/camera/image_raw", help="--bag: image topic")
    parser.add_argument("--fps", type=float, default=10.0, help="--bag: frame rate")
    parser.add_argument("--speed", type=float, default=6.0, help="--bag: camera speed, m/s")
    parser.add_argument("--encoding", choices=("rgb8", "bgr8"), default="rgb8",
                        help="--bag: image encoding")


def make_scenes(args: argparse.Namespace) -> dict:
    """Write the frames (and bag); a summary dict."""
    from ood_perception.synthetic import scenes as synthetic

    if args.count < 1:
        raise ConfigurationError(f"--count must be at least 1, got {args.count}")
    if not 0 <= args.min_anomalies <= args.max_anomalies:
        raise ConfigurationError("need 0 <= --min-anomalies <= --max-anomalies, got "
                                 f"{args.min_anomalies} and {args.max_anomalies}")
    if not (math.isfinite(args.fps) and args.fps > 0):
        raise ConfigurationError(f"--fps must be a positive number, got {args.fps}")
    if not (math.isfinite(args.speed) and args.speed >= 0):
        raise ConfigurationError(f"--speed must be a number >= 0, got {args.speed}")
    output = Path(args.output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConfigurationError(f"--output {output} exists and is not an empty folder; frames "
                                 "of an earlier run would mix with these")
    config = synthetic.SceneConfig(height=args.size[0], width=args.size[1])
    split = None if args.anomalies == "none" else args.anomalies
    counts = (args.min_anomalies, args.max_anomalies)
    if args.bag:
        world = synthetic.sequence_world(args.seed, args.count, config, split, counts,
                                         speed=args.speed, fps=args.fps)
        frames = synthetic.drive(world, args.count, args.speed, args.fps, args.seed)
        synthetic.write_sequence(output, frames, args.topic, args.fps, args.encoding, args.seed,
                                 world.calibration)
    else:
        frames = [synthetic.make_scene(args.seed * 1_000_003 + i, config, split, counts)
                  for i in range(args.count)]
        synthetic.write_frames(output, frames)
    present = sorted({name for frame in frames for name in frame.families})
    return {"frames": len(frames), "with_anomalies": sum(bool(f.families) for f in frames),
            "families": present}


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    summary = make_scenes(args)
    bag = f", rosbag {Path(args.output) / 'bag'} on {args.topic}" if args.bag else ""
    print(f"wrote {summary['frames']} frames ({summary['with_anomalies']} with anomalies) to "
          f"{args.output}{bag} in {time.perf_counter() - start:.1f} s; anomaly families: "
          f"{', '.join(summary['families']) or 'none'}")
    return 0
