"""`ood-perception` command line: one sub-command per module of `ood_perception/cli/`.

Only the chosen command's module is imported, so `--help` stays fast and a tool's heavy
dependencies (torch, matplotlib) load only when that tool runs. A command's
`OodPerceptionError` becomes one line on stderr and exit code 2, here and nowhere else.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ood_perception.errors import OodPerceptionError

# command -> (module under ood_perception.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "score images, a folder or a video without ROS; write maps, masks, overlays"),
    "export": ("export", "export a model (official checkpoint or random init) to a contract ONNX"),
    "build-engine": ("build_engine", "build and cache a TensorRT engine from an exported ONNX"),
    "benchmark": ("benchmark", "stage times and frame rates vs the official UEM protocol"),
    "evaluate": ("evaluate", "pixel and component metrics of a model or of saved score maps"),
    "calibrate": ("calibrate", "threshold for a target TPR/FPR, written to node params"),
    "replay": ("replay", "run the pipeline over rosbags and write score and mask topics"),
    "mine": ("mine", "score many drives into a Parquet catalog; top-K frames for labelling"),
    "make-scenes": ("make_scenes", "generate synthetic road scenes with pasted anomalies"),
    "train-segmentor": ("train_segmentor", "stage 1: train the inlier segmentor"),
    "train-uem": ("train_uem", "stage 2: train the UEM head on a frozen segmentor"),
    "train-dood": ("train_dood", "train the DOoD denoiser on a frozen segmentor's features"),
    "dood-stats": ("dood_stats", "in-distribution statistics of the DOoD compound score"),
    "demo": ("demo", "end-to-end demo: embedded model, synthetic drive, node over DDS"),
    "params-doc": ("params_doc", "write or check the parameter table and params file"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: ood-perception COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`ood-perception COMMAND --help` shows a command's options."]
    return "\n".join(lines)


def build_parser(command: str) -> argparse.ArgumentParser:
    """Parser of one command, from its module's `add_arguments`."""
    module_name, help_ = COMMANDS[command]
    module = importlib.import_module(f"ood_perception.cli.{module_name}")
    parser = argparse.ArgumentParser(prog=f"ood-perception {command}", description=help_)
    module.add_arguments(parser)
    parser.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"ood-perception: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    args = build_parser(command).parse_args(rest)
    try:
        return int(args.handler(args) or 0)
    except OodPerceptionError as error:  # what a user can fix: one line, exit 2
        print(f"ood-perception {command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
