"""`ood-perception benchmark`: stage times and frame rates against the official UEM protocol.

Writes the figures as JSON and as docs/speed.md's markdown table, and prints one PASS / MISS
line per speed target (docs/speed.md). `--tiny` swaps in small models and frames so a CPU run takes
seconds (its figures check the tool, not the targets).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ood_perception.cli.arguments import add_runtime_arguments, image_size, runtime_options

TINY_FRAME_SIZE = (70, 126)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ood_perception.profiling.speed import CASE_NAMES

    # The cases run models in memory with random weights: the torch backend only. Device
    # default: cuda when available; precision default: fp16 on cuda, fp32 on cpu (the official
    # protocol always runs fp32).
    add_runtime_arguments(parser, backends=("torch",), default_backend="torch")
    parser.add_argument("--cases", default=",".join(CASE_NAMES),
                        help=f"comma-separated subset of: {', '.join(CASE_NAMES)}")
    parser.add_argument("--frame-size", type=image_size, default=None,
                        help="camera frame HEIGHTxWIDTH (default 1080x1920, tiny 70x126); "
                        "the tiled UEM model takes frames at this size")
    parser.add_argument("--cameras", type=int, default=3,
                        help="cameras batched in the uem-single-cameras case")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed iterations per case (default 3, tiny 1)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="timed iterations per case (default 20, tiny 3)")
    parser.add_argument("--official-iterations", type=int, default=2,
                        help="timed iterations of the official protocol (about 1 s each)")
    parser.add_argument("--tiny", action="store_true",
                        help="ViT-S / Swin-T at tiny sizes: checks the tool on a CPU")
    parser.add_argument("--no-cuda-graphs", action="store_true",
                        help="run the product cases eagerly")
    parser.add_argument("--no-backbone", action="store_true",
                        help="skip the backbone compute-efficiency measurement")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="write the markdown table here")
    parser.add_argument("--profile", default=None, metavar="CASE",
                        help="also profile one eager iteration of CASE (operator table)")
    parser.add_argument("--profile-output", type=Path, default=None,
                        help="where the --profile table goes (default: stdout)")


def settings_from_args(args: argparse.Namespace):
    """The parsed flags -> benchmark Settings (tiny and device-dependent defaults filled)."""
    import torch

    from ood_perception.profiling.speed import Settings

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    precision = args.precision or ("fp16" if device.startswith("cuda") else "fp32")
    runtime_options(argparse.Namespace(backend=args.backend, device=device,
                                       precision=precision))
    frame_size = args.frame_size or (TINY_FRAME_SIZE if args.tiny else (1080, 1920))
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    iterations = args.iterations if args.iterations is not None else (3 if args.tiny else 20)
    cases = tuple(name.strip() for name in args.cases.split(",") if name.strip())
    return Settings(device=device, precision=precision, frame_size=frame_size, warmup=warmup,
                    iterations=iterations, official_iterations=args.official_iterations,
                    cameras=args.cameras, cases=cases, tiny=args.tiny,
                    cuda_graphs=not args.no_cuda_graphs, backbone=not args.no_backbone)


def run_benchmark_command(args: argparse.Namespace) -> dict:
    """Measure, write the requested files, print the table and the target lines."""
    from ood_perception.errors import ConfigurationError
    from ood_perception.profiling.speed import (
        build_cases,
        camera_buffers,
        profile_case,
        render_markdown,
        run_benchmark,
    )

    settings = settings_from_args(args)
    if args.profile is not None and args.profile not in build_cases(settings):
        raise ConfigurationError(f"--profile {args.profile!r} is not a case name")
    report = run_benchmark(settings)
    markdown = render_markdown(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown)
    print(markdown)
    if args.profile is not None:
        case = build_cases(settings)[args.profile]
        table = profile_case(case, settings, camera_buffers(case.cameras, settings.frame_size))
        if args.profile_output:
            args.profile_output.parent.mkdir(parents=True, exist_ok=True)
            args.profile_output.write_text(table + "\n")
        else:
            print(table)
    return report


def run(args: argparse.Namespace) -> int:
    run_benchmark_command(args)
    return 0
