"""Fleet runs on a real local Ray cluster (one per module): `evaluate --ray` equals the local
run, `mine` catalogs every image message, a killed worker is retried without changing the
result, a corrupt bag is reported while the rest go on."""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import pyarrow.parquet as pq
import pytest
import ray
from fleet_data import corrupt_bag, drives, labelled_folder

from ood_perception.cli.main import main
from ood_perception.core.pipeline import Pipeline
from ood_perception.evaluation.datasets import open_dataset
from ood_perception.evaluation.evaluate import EvaluationConfig
from ood_perception.fleet.cluster import FleetConfig, connect
from ood_perception.fleet.evaluate import evaluate_dataset
from ood_perception.fleet.spec import PipelineSpec
from ood_perception.io import rosbag


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local cluster for the module, started as `--ray local` starts it; the commands
    below join it instead of starting their own."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    connect(FleetConfig(address="local"))
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # KillOnceSpec
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return labelled_folder(tmp_path_factory.mktemp("unseen_dataset"))


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("drives")
    counts = drives(root)
    corrupt_bag(root / "broken" / "bag")
    return root, counts


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_evaluate_on_ray_equals_the_local_run(tmp_path, tiny_model_path, dataset):
    command = ["evaluate", "--model", str(tiny_model_path), "--dataset", str(dataset),
               "--dataset-format", "folder", "--worst", "3"]
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert main([*command, "--json", str(local / "out.json"), "--report", str(local)]) == 0
    assert main([*command, "--json", str(on_ray / "out.json"), "--report", str(on_ray),
                 "--ray", "local", "--workers", "2", "--shard-frames", "2"]) == 0
    results = _json(local / "out.json")
    # Only the local run times its frames; every figure is the same.
    assert results.pop("speed")["frames_per_second"] > 0
    assert json.dumps(_json(on_ray / "out.json"), sort_keys=True) == json.dumps(
        results, sort_keys=True)
    assert (on_ray / "report.md").read_text() == (local / "report.md").read_text()
    assert results["counts"]["frames"] == 6
    assert 0.0 < results["ap"] < 1.0 and results["components"]["gt_components"] >= 3
    for key in ("ap", "auroc", "fpr95"):
        assert _json(on_ray / "out.json")[key] == results[key]


def _catalog(out: Path):
    table = pq.read_table(out / "catalog")
    return table.sort_by([("bag", "ascending"), ("topic", "ascending"),
                          ("frame_index", "ascending")])


def test_mine_on_ray_catalogs_every_image_message(tmp_path, tiny_model_path, bags, capsys):
    root, counts = bags
    command = ["mine", str(root), "--model", str(tiny_model_path), "--top-k", "3",
               "--score-threshold", "0.5"]
    out = tmp_path / "mined"
    assert main([*command, "--out", str(out), "--ray", "local", "--workers", "2"]) == 1
    assert "failed" in capsys.readouterr().out
    table = _catalog(out)
    rows = table.to_pylist()
    scored = [r for r in rows if r["status"] == "scored"]
    for bag, count in counts.items():
        mine = [r for r in scored if r["bag"] == str(Path(bag).absolute())]
        assert [r["frame_index"] for r in mine] == list(range(count)), bag
        with rosbag.open_reader(bag) as reader:
            stamps = [t for _, t, _ in rosbag.stream_messages(reader)]
        assert [r["stamp_ns"] for r in mine] == stamps  # header stamps = bag times here
    assert len(scored) == sum(counts.values())
    broken = str(root / "broken" / "bag")
    failed = [r for r in rows if r["status"] == "bag_failed"]
    assert [r["bag"] for r in failed] == [broken] and "cannot read bag" in failed[0]["error"]
    summary = _json(out / "summary.json")
    assert summary["bags"] == {"total": 5, "scored": 4, "skipped": 0, "failed": 1}
    assert summary["workers"] == 2 and summary["frames"]["scored"] == len(scored)
    top = summary["top_k"]
    assert [t["rank"] for t in top] == [1, 2, 3]
    assert [t["score_max"] for t in top] == sorted(r["score_max"] for r in scored)[::-1][:3]
    for entry in top:
        overlay = cv2.imread(entry["overlay"].removeprefix("file://"))
        size = next((r["height"], r["width"]) for r in scored if r["bag"] == entry["bag"])
        assert overlay.shape == (*size, 3)

    # the same bags in this process give the same rows
    here = tmp_path / "here"
    assert main([*command, "--out", str(here)]) == 1
    columns = [c for c in table.column_names if c != "error"]
    assert _catalog(here).select(columns).equals(table.select(columns))

    # a re-run (here in this process) skips what the catalog has, tries the broken bag again
    assert main([*command, "--out", str(out)]) == 1
    again = _json(out / "summary.json")
    assert again["bags"] == {"total": 5, "scored": 0, "skipped": 4, "failed": 1}
    assert _catalog(out).num_rows == table.num_rows


class KillingPipeline(Pipeline):
    """Kills its own worker process once, at its `kill_at`-th frame (a marker file makes it
    once across the restarted worker)."""

    marker: Path
    kill_at: int
    seen: int = 0

    def process(self, frames):
        self.seen += len(frames)
        if self.seen >= self.kill_at and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().process(frames)


@dataclass(frozen=True)
class KillOnceSpec(PipelineSpec):
    marker: str = ""
    kill_at: int = 2

    def build(self) -> Pipeline:
        pipeline = PipelineSpec.build(self)
        killing = KillingPipeline(pipeline.backend, pipeline.config)
        killing.marker, killing.kill_at = Path(self.marker), self.kill_at
        return killing


def test_a_worker_killed_mid_shard_is_retried_and_the_result_is_unchanged(
        tmp_path, tiny_model_path, dataset):
    config = EvaluationConfig()
    folder = open_dataset(dataset, "folder")
    plain = PipelineSpec(str(tiny_model_path))
    marker = tmp_path / "killed"
    killing = KillOnceSpec(str(tiny_model_path), marker=str(marker), kill_at=2)
    fleet = FleetConfig(address="local", workers=2, progress=False)
    expected = evaluate_dataset("tiny", folder, plain, config, FleetConfig(progress=False), 3)
    results = evaluate_dataset("tiny", folder, killing, config, fleet, shard_frames=3)
    assert marker.exists(), "no worker was killed"
    with pytest.raises(ProcessLookupError):
        os.kill(int(marker.read_text()), 0)  # that worker process is gone
    assert json.dumps(results, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_replay_on_ray_writes_one_bag_per_input(tmp_path, tiny_model_path, bags, capsys):
    root, counts = bags
    out = tmp_path / "scored"
    code = main(["replay", str(root), "--out", str(out), "--model", str(tiny_model_path),
                 "--no-copy", "--no-overlay", "--score-threshold", "0.5", "--ray", "local",
                 "--workers", "2"])
    assert code == 1
    printed = capsys.readouterr().out
    assert "replayed 4 of 5 bags (0 skipped, 1 failed)" in printed
    for bag, count in counts.items():
        scored = out / Path(bag).relative_to(root)
        topics = [image.topic for image in rosbag.read_images(scored)]
        assert len(topics) == 2 * count and all(t.endswith(("/anomaly_score", "/obstacle_mask"))
                                                for t in topics)
    assert not (out / "broken" / "bag").exists()
