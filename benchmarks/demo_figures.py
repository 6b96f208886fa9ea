"""`make demo`'s figures as a results file: the demo end to end (export, held-out drive, the
node over Fast DDS), its AP / FPR95, rate in lockstep, latency and total time.
Run: .venv/bin/python benchmarks/demo_figures.py [--output /tmp/demo_out]
"""

from __future__ import annotations

import argparse
import sys

from record import add_json_argument, write_results

from ood_perception.cli import demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    demo.add_arguments(parser)
    add_json_argument(parser, "demo")
    args = parser.parse_args(argv)
    figures = demo.run_demo(args)
    write_results(args.json, "demo", {"frames_requested": args.frames, "seed": args.seed,
                                      **figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
