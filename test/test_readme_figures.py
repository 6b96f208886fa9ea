"""Every figure in the README's measured sentences comes from a committed results file.

The measured sentences are the bullets of the README's `## Measured` section. Each bullet
names one or more `benchmarks/results/<name>.json` files (written by the scripts in
`benchmarks/`); every number in the bullet, outside `code spans` and link targets, must be a
number in those files as written: rounded to the digits the README gives, and a percentage
also as a fraction.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS_REFERENCE = re.compile(r"benchmarks/results/[\w.-]+\.json")
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(\s*%)?")
README_LIMIT_BYTES = 12 * 1024


def measured_bullets(text: str) -> list[str]:
    """The bullets of the `## Measured` section, continuation lines joined."""
    section = text.split("\n## Measured\n", 1)[1].split("\n## ", 1)[0]
    bullets: list[str] = []
    for line in section.splitlines():
        if line.startswith("- "):
            bullets.append(line[2:])
        elif bullets and line.startswith("  ") and line.strip():
            bullets[-1] += " " + line.strip()
    return bullets


def _file_numbers(value) -> list[float]:
    """Every number in a results file: its numeric values and the numbers inside its strings
    (the command line, a model's note)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, str):
        return [float(match) for match in re.findall(r"\d+(?:\.\d+)?", value)]
    if isinstance(value, dict):
        value = list(value.values())
    return [number for item in value for number in _file_numbers(item)] if isinstance(
        value, list) else []


def _written_as(written: str, value: float) -> bool:
    digits = len(written.split(".")[1]) if "." in written else 0
    return abs(value - float(written)) <= 0.5 * 10 ** -digits + 1e-9


def unbacked_numbers(bullet: str, root: Path = ROOT) -> list[str]:
    """The numbers of one measured bullet that none of its results files holds."""
    files = RESULTS_REFERENCE.findall(bullet)
    if not files:
        return ["(no benchmarks/results/*.json named)"]
    numbers = [number for name in files
               for number in _file_numbers(json.loads((root / name).read_text()))]
    prose = re.sub(r"`[^`]*`", " ", bullet)  # code spans: commands, file names
    prose = re.sub(r"\]\([^)]*\)", "]", prose)  # link targets
    prose = RESULTS_REFERENCE.sub(" ", prose)
    missing = []
    for written, percent in NUMBER.findall(prose):
        candidates = numbers + ([100 * n for n in numbers] if percent else [])
        if not any(_written_as(written, value) for value in candidates):
            missing.append(written + ("%" if percent else ""))
    return missing


BULLETS = measured_bullets(README.read_text())


def test_the_readme_has_measured_sentences_and_stays_short():
    assert len(BULLETS) >= 3
    assert len(README.read_bytes()) <= README_LIMIT_BYTES


@pytest.mark.parametrize("bullet", BULLETS, ids=[b[:40] for b in BULLETS])
def test_every_measured_number_is_in_its_results_file(bullet):
    assert unbacked_numbers(bullet) == [], bullet


def test_results_files_say_machine_date_and_command():
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        record = json.loads(path.read_text())
        assert {"benchmark", "date", "command", "machine", "figures"} <= set(record), path.name
        assert record["command"].startswith("python benchmarks/"), path.name
        assert len(record["machine"]["load_average_at_start"]) == 3, path.name


def test_a_number_not_in_the_file_is_reported(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "x.json").write_text(json.dumps({"figures": {"ap": 0.8435, "share": 0.98},
                                                "command": "python benchmarks/x.py --seconds 6"}))
    reference = "([results](benchmarks/results/x.json))"
    assert unbacked_numbers(f"AP 0.84, 98% in 6 s `--repeat 20` {reference}", tmp_path) == []
    assert unbacked_numbers(f"AP 0.85, 97% in 7 s {reference}", tmp_path) == ["0.85", "97%",
                                                                             "7"]
    assert unbacked_numbers("AP 0.84 without a file", tmp_path) == [
        "(no benchmarks/results/*.json named)"]
