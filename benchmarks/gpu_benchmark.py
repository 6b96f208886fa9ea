"""The GPU benchmark as a script: `ood-perception benchmark` without the console entry point.

Same flags as the command (`--help`). On the lent GPU machine `run_on_device.sh` calls it
with the issue's full cases; on a CPU, `--tiny` checks the tool in seconds.

Run: .venv/bin/python benchmarks/gpu_benchmark.py --json out/benchmark.json \
         --markdown out/benchmark.md
"""

from __future__ import annotations

import argparse
import sys

from ood_perception.cli import benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/gpu_benchmark.py",
                                     description=benchmark.__doc__.splitlines()[0])
    benchmark.add_arguments(parser)
    return benchmark.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
