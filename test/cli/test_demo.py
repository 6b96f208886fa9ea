"""`ood-perception demo` end to end: export, rosbag, the node over real DDS, GIF, AP."""

from __future__ import annotations

import json
import os

import pytest
from PIL import Image
from ros_harness import isolated_ros_env

from ood_perception.cli.main import COMMANDS, main

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture
def ros_env(monkeypatch):
    for key, value in isolated_ros_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setitem(COMMANDS, "demo", ("demo", "the product end to end"))


def test_demo_runs_the_node_over_dds_and_detects_the_held_out_obstacles(ros_env, tmp_path,
                                                                       capsys) -> None:
    out = tmp_path / "demo_out"
    assert main(["demo", "--output", str(out)]) == 0  # the 30-frame drive of make demo
    printed = capsys.readouterr().out
    assert "held-out anomalies over DDS: AP" in printed
    results = json.loads((out / "demo_results.json").read_text())
    assert results["frames"] == 30 and results["incomplete_frames"] == 0
    assert results["scored_frames"] == 30
    assert results["ap"] >= 0.8, results
    assert results["weights"].startswith("embedded")
    assert (out / "uem_demo.onnx").is_file()
    assert len(list((out / "overlays").glob("*.png"))) == 30
    gif = Image.open(out / "demo.gif")
    assert gif.n_frames == 30 and gif.size == (448, 224)
    assert (out / "sequence" / "bag" / "metadata.yaml").is_file()
    assert "ready" in (out / "node.log").read_text()
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
