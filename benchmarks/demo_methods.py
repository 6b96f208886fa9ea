"""The two embedded demo models compared on `make demo`'s held-out drive (docs/dood.md):
`ood-perception evaluate` of `uem-demo` and of `dood-demo` at 25 and 5 diffusion steps, ONNX
Runtime on CPU; AP, AUROC, FPR95, component sIoU / PPV / mean F1 and frames per second.
Run: .venv/bin/python benchmarks/demo_methods.py [--folder /tmp/demo_methods]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from record import add_json_argument, write_results

from ood_perception.cli.main import main as cli

SIZE = "224x448"


def _cli(*args: str) -> None:
    code = cli(list(args))
    if code != 0:
        raise SystemExit(f"ood-perception {' '.join(args)} exited with {code}")


def _figures(path: Path) -> dict:
    results = json.loads(path.read_text())
    components = results["components"]
    return {"ap": results["ap"], "auroc": results["auroc"], "fpr95": results["fpr95"],
            "siou": components["siou_gt"], "ppv": components["ppv"],
            "component_f1": components["f1_mean"],
            "frames_per_second": results["speed"]["frames_per_second"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/demo_methods"))
    parser.add_argument("--frames", type=int, default=30, help="frames in the held-out drive")
    add_json_argument(parser, "demo_methods")
    args = parser.parse_args(argv)
    folder = args.folder
    folder.mkdir(parents=True, exist_ok=True)
    drive = folder / "drive"
    _cli("make-scenes", "--output", str(drive), "--bag", "--seed", "7", "--count",
         str(args.frames), "--fps", "10", "--min-anomalies", "2", "--max-anomalies", "4")
    graphs = {"uem-demo": folder / "uem_demo.onnx", "dood-demo, 25 steps": folder / "dood.onnx",
              "dood-demo, 5 steps": folder / "dood_t5.onnx"}
    _cli("export", "--model", "uem-demo", "--input-size", SIZE, "--output",
         str(graphs["uem-demo"]))
    _cli("export", "--model", "dood-demo", "--input-size", SIZE, "--output",
         str(graphs["dood-demo, 25 steps"]))
    stats = folder / "dood_t5.stats.json"
    _cli("dood-stats", "--model", "dood-demo", "--input-size", SIZE, "--timesteps", "5",
         "--synthetic", "25", "--output", str(stats), "--no-progress")
    _cli("export", "--model", "dood-demo", "--input-size", SIZE, "--timesteps", "5",
         "--dood-stats", str(stats), "--output", str(graphs["dood-demo, 5 steps"]))
    models = {}
    for name, graph in graphs.items():
        report = graph.with_suffix(".json")
        _cli("evaluate", "--model", str(graph), "--dataset", str(drive), "--json", str(report))
        models[name] = _figures(report)
        print(name, models[name], flush=True)
    write_results(args.json, "demo_methods", {"frames": args.frames, "seed": 7,
                                              "input_size": SIZE, "models": models})
    return 0


if __name__ == "__main__":
    sys.exit(main())
