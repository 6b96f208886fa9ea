"""`ood-perception params-doc`: the committed parameter table and params file are what
`PARAMETERS` renders, and a parameter added there shows up in both after `--write`."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import yaml

from ood_perception.cli.main import main
from ood_perception.cli.params_doc import PARAMETERS_DOC, PARAMS_FILE
from ood_perception.ros.parameters import PARAMETERS, PARAMS_FILE_KEY, ParameterSpec

ROOT = Path(__file__).resolve().parents[2]


def test_committed_table_and_params_file_equal_the_generated_ones(capsys):
    assert main(["params-doc", "--check", "--root", str(ROOT)]) == 0, capsys.readouterr().err


def test_the_params_file_holds_every_default_and_the_table_every_name():
    values = yaml.safe_load((ROOT / PARAMS_FILE).read_text())[PARAMS_FILE_KEY]["ros__parameters"]
    typed = {name for name, spec in PARAMETERS.items() if spec.default != []}
    assert set(values) == typed  # empty lists have no type in a params file: commented out
    for name in typed:
        default = PARAMETERS[name].default
        assert values[name] == default or (math.isnan(default) and math.isnan(values[name]))
        assert type(values[name]) is type(default), name  # 1.0 stays a double
    table = (ROOT / PARAMETERS_DOC).read_text()
    assert all(f"| `{name}` |" in table for name in PARAMETERS)


def test_a_new_parameter_makes_check_fail_until_write(tmp_path, monkeypatch, capsys):
    for path in (PARAMS_FILE, PARAMETERS_DOC):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    monkeypatch.setitem(PARAMETERS, "grid_resolution",
                        ParameterSpec(0.25, "double", "cell size in metres", bounds=(0.01, 10.0)))
    args = ["params-doc", "--root", str(tmp_path)]
    assert main([*args, "--check"]) == 1
    stale = capsys.readouterr().err
    assert str(tmp_path / PARAMS_FILE) in stale and str(tmp_path / PARAMETERS_DOC) in stale
    assert main([*args, "--write"]) == 0
    assert main([*args, "--check"]) == 0
    values = yaml.safe_load((tmp_path / PARAMS_FILE).read_text())
    assert values[PARAMS_FILE_KEY]["ros__parameters"]["grid_resolution"] == 0.25
    doc = (tmp_path / PARAMETERS_DOC).read_text()
    row = "| `grid_resolution` | double | `0.25` | 0.01 to 10 | yes | cell size in metres |"
    assert row in doc
    assert doc.count("| `model_path` |") == 1  # the table replaced, not appended
    assert doc.endswith((ROOT / PARAMETERS_DOC).read_text().split("parameter table -->")[1])
