"""`ood-perception params-doc`: the node's parameter table and its example params file, both
rendered from `PARAMETERS` (`ros/parameters.py`), so the three never disagree.

`--write` rewrites `config/ood_perception.yaml` and the generated part of
`docs/parameters.md` in a checkout; `--check` exits 1 naming each file that differs from what
`PARAMETERS` renders (test/cli/test_params_doc.py runs it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from pathlib import Path
from typing import Any

from ood_perception.errors import ConfigurationError
from ood_perception.ros.parameters import PARAMETERS, PARAMS_FILE_KEY, ParameterSpec

PARAMS_FILE = Path("config") / "ood_perception.yaml"
PARAMETERS_DOC = Path("docs") / "parameters.md"
COMMAND = "ood-perception params-doc --write"
# docs/parameters.md is hand-written around the table between these two lines.
TABLE_START = f"<!-- parameter table: generated from PARAMETERS by `{COMMAND}` -->"
TABLE_END = "<!-- end of the generated parameter table -->"
WIDTH = 99
YAML_HEADER = f"""\
# Parameters of ood_perception_node and ood_perception_lifecycle_node, every one at its
# default (docs/parameters.md). Generated from PARAMETERS (ood_perception/ros/parameters.py)
# by `{COMMAND}`: edit those, not this file.
# [read-only]: read at start-up; [live]: changes with `ros2 param set`.
# `/**:` applies them to the node under any namespace or name (launch `namespace:=front`).
{PARAMS_FILE_KEY}:
  ros__parameters:
"""
YAML_FOOTER = """\
    # Per-topic QoS, as in any ROS 2 node that offers overrides (read at start-up):
    # qos_overrides:
    #   /camera/image_raw:
    #     subscription:
    #       reliability: reliable   # best_effort | reliable
    #       depth: 1
"""


def _yaml_value(value: Any) -> str:
    """A default as ROS 2 params-file YAML: NaN as `.nan`, floats keep their point (so rclpy
    types them double), strings and lists in JSON's flow form (valid YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return ".nan" if math.isnan(value) else repr(value)
    return json.dumps(value)


def _limits(spec: ParameterSpec) -> str:
    if spec.choices:
        return " | ".join(spec.choices)
    if spec.bounds:
        low, high = spec.bounds
        return f"{_number(low)} to {_number(high)}"
    return ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def render_params_file(parameters: dict[str, ParameterSpec] = PARAMETERS) -> str:
    """The example params file: each parameter's description as a comment, then its default.
    An empty list is written commented out (a params file cannot type an empty list)."""
    lines = [YAML_HEADER.rstrip("\n")]
    for name, spec in parameters.items():
        notes = [spec.description]
        if _limits(spec):
            notes.append(f"({_limits(spec)})")
        notes.append("[read-only]" if spec.read_only else "[live]")
        lines += textwrap.wrap(" ".join(notes), WIDTH, initial_indent="    # ",
                               subsequent_indent="    # ", break_on_hyphens=False)
        entry = f"{name}: {_yaml_value(spec.default)}"
        empty_list = isinstance(spec.default, list) and not spec.default
        lines.append(f"    # {entry}" if empty_list else f"    {entry}")
    return "\n".join(lines) + "\n" + YAML_FOOTER


def _markdown_default(spec: ParameterSpec) -> str:
    value = spec.default
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if value == "" or value == []:
        return "empty"
    if isinstance(value, list):
        return "`[" + ", ".join(str(item) for item in value) + "]`"
    return f"`{_yaml_value(value).strip(chr(34))}`"


def _markdown_cell(text: str) -> str:
    """Text safe in a table cell: `|` escaped, `<topic>` shown rather than read as HTML."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def render_table(parameters: dict[str, ParameterSpec] = PARAMETERS) -> str:
    """The markdown table of every parameter (name, type, default, values, run time, why)."""
    rows = ["| name | type | default | values | changes at run time | meaning |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, spec in parameters.items():
        limits = _limits(spec).replace(" | ", ", ")
        cells = [f"`{name}`", spec.kind, _markdown_default(spec), limits,
                 "no" if spec.read_only else "yes", spec.description]
        rows.append("| " + " | ".join(_markdown_cell(cell) for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def render_parameters_doc(current: str) -> str:
    """`current` (docs/parameters.md) with the table between its markers regenerated."""
    if TABLE_START not in current or TABLE_END not in current:
        raise ConfigurationError(f"{PARAMETERS_DOC} lacks the table markers {TABLE_START!r} "
                                 f"and {TABLE_END!r}")
    before, rest = current.split(TABLE_START, 1)
    _, after = rest.split(TABLE_END, 1)
    return f"{before}{TABLE_START}\n{render_table()}{TABLE_END}{after}"


def rendered_files(root: Path) -> dict[Path, str]:
    """Each generated file of the checkout at `root` -> the text it should have."""
    doc = root / PARAMETERS_DOC
    if not doc.is_file():
        raise ConfigurationError(f"{doc} not found: run this in a checkout of the repository "
                                 "(or give --root)")
    return {root / PARAMS_FILE: render_params_file(),
            doc: render_parameters_doc(doc.read_text())}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the generated files")
    mode.add_argument("--check", action="store_true",
                      help="exit 1 if a generated file differs from PARAMETERS")
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="repository checkout (default: the current directory)")


def run(args: argparse.Namespace) -> int:
    stale = []
    for path, text in rendered_files(args.root).items():
        if args.write:
            path.write_text(text)
            print(f"wrote {path}")
        elif not path.is_file() or path.read_text() != text:
            stale.append(path)
    for path in stale:
        print(f"{path} differs from PARAMETERS: run `{COMMAND}`", file=sys.stderr)
    return 1 if stale else 0
