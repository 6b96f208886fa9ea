"""Fleet parts without Ray: which bags a run reads, flags, the catalog's rows and re-runs,
one shard's failure leaving the others alone (the in-process runner)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from fleet_data import corrupt_bag, drives
from tiny_model import export_tiny_model

from ood_perception.cli.main import main
from ood_perception.errors import ConfigurationError
from ood_perception.fleet.cluster import FleetConfig
from ood_perception.fleet.inputs import expand_bags, expected_frames
from ood_perception.fleet.runner import Fleet, Shard
from ood_perception.fleet.spec import PipelineSpec
from ood_perception.io import rosbag


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("drives")
    return root, drives(root, frames=(3, 2))


def test_bags_from_folders_globs_and_list_files(bags, tmp_path):
    root, counts = bags
    names = sorted(b.name for b in expand_bags([root]))
    assert names == ["drive0/bag", "drive1/bag", "drive_mcap"]
    assert [b.path for b in expand_bags([str(root / "drive_*")])] == [root / "drive_mcap"]
    listing = tmp_path / "bags.txt"
    listing.write_text(f"# two drives\n{root / 'drive1' / 'bag'}\n\n{root / 'drive_mcap'} # mcap")
    assert [b.path for b in expand_bags([listing])] == [root / "drive1" / "bag",
                                                         root / "drive_mcap"]
    assert len(expand_bags([root, root / "drive0" / "bag"])) == 3  # each bag once
    cut = tmp_path / "cut"  # a recording stopped before its metadata.yaml was written
    shutil.copytree(root / "drive0" / "bag", cut)
    (cut / "metadata.yaml").unlink()
    assert [b.path for b in expand_bags([cut])] == [cut]
    assert {expected_frames(b.path) for b in expand_bags([root])} == {3, 2}


@pytest.mark.parametrize("spec, message", [
    ("drive*/bag", "several bags are named"),
    ("nowhere", "does not exist"),
    ("no_match_*", "no bags match"),
])
def test_bag_inputs_that_cannot_work(bags, monkeypatch, spec, message):
    monkeypatch.chdir(bags[0])
    with pytest.raises(ConfigurationError, match=message):
        expand_bags([spec])


@pytest.mark.parametrize("extra, message", [
    (["--workers", "2"], "add --ray"),
    (["--ray", "--workers", "0"], "--workers must be >= 1"),
])
def test_fleet_flags_are_checked_before_any_work(bags, tmp_path, tiny_model_path, capsys,
                                                 extra, message):
    command = ["mine", str(bags[0]), "--model", str(tiny_model_path), "--out",
               str(tmp_path / "out"), *extra]
    assert main(command) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_ray_address_that_is_a_path_is_refused(bags, tmp_path, tiny_model_path, capsys):
    bag = str(bags[0] / "drive0" / "bag")
    command = ["replay", "--model", str(tiny_model_path), "--out", str(tmp_path / "o"),
               bag, "--ray", bag]
    assert main(command) == 2
    assert "put --ray after the inputs" in capsys.readouterr().err


def _bad_jpeg_bag(path):
    """Two CompressedImage messages, the second not a JPEG at all."""
    import cv2

    store = rosbag.typestore()
    message = store.types[rosbag.COMPRESSED]
    header = store.types["std_msgs/msg/Header"]
    stamp = store.types["builtin_interfaces/msg/Time"]
    good = cv2.imencode(".jpg", np.full((32, 48, 3), 200, np.uint8))[1].ravel()
    with rosbag.open_writer(path) as writer:
        connection = writer.add_connection("/cam/image/compressed", rosbag.COMPRESSED,
                                           typestore=store)
        for index, data in enumerate([good, np.frombuffer(b"not a jpeg", np.uint8)]):
            msg = message(header=header(stamp=stamp(sec=index, nanosec=0), frame_id="cam"),
                          format="jpeg", data=data)
            writer.write(connection, index * 10**9, store.serialize_cdr(msg, rosbag.COMPRESSED))


def test_mine_rows_for_dropped_frames_and_failed_bags_and_model_versions(
        bags, tmp_path, tiny_model_path):
    root = tmp_path / "drives"
    shutil.copytree(bags[0] / "drive0", root / "drive0")
    _bad_jpeg_bag(root / "jpeg")
    corrupt_bag(root / "broken")
    out = tmp_path / "mined"
    command = ["mine", str(root), "--model", str(tiny_model_path), "--out", str(out),
               "--top-k", "0", "--score-threshold", "0.5", "--batch-size", "2"]
    assert main(command) == 1
    rows = pq.read_table(out / "catalog").to_pylist()
    by_status = {s: [r for r in rows if r["status"] == s] for s in
                 ("scored", "dropped", "bag_failed")}
    assert len(by_status["scored"]) == 3 + 1
    (dropped,) = by_status["dropped"]
    assert (dropped["topic"], dropped["frame_index"]) == ("/cam/image/compressed", 1)
    assert dropped["score_max"] is None and dropped["error"].startswith("corrupt")
    (failed,) = by_status["bag_failed"]
    assert failed["bag"] == str(root / "broken") and failed["frame_index"] is None
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == {"scored": 4, "dropped": 1}
    assert summary["failures"][0]["bag"] == str(root / "broken")

    other = export_tiny_model(tmp_path / "other.onnx", input_size=(32, 48))
    shutil.rmtree(root / "broken")
    command[command.index("--model") + 1] = str(other)  # a new model scores every bag again
    assert main(command) == 0
    versions = pq.read_table(out / "catalog").column("model_version").to_pylist()
    assert len(set(versions)) == 2 and len(versions) == len(rows) + 5


def _count_or_fail(pipeline, payload, progress):
    if payload == "bad":
        raise ValueError("this shard is broken")
    progress(payload)
    return payload * 2


def test_one_failing_shard_leaves_the_others(tiny_model_path):
    shards = [Shard(str(v), 1, v) for v in (1, "bad", 3)]
    with Fleet(PipelineSpec(str(tiny_model_path)), FleetConfig(progress=False), 3) as fleet:
        results = fleet.run(_count_or_fail, shards)
    assert [r.value for r in results] == [2, None, 6]
    assert results[1].error == "ValueError: this shard is broken"


def test_catalog_rows_are_written_as_they_come(bags, tmp_path, tiny_model_path, monkeypatch):
    """A bag's rows leave the worker every ROWS_PER_GROUP rows: memory does not grow with
    the bag; the file appears under its name only when the bag is complete."""
    from ood_perception.fleet import catalog
    from ood_perception.fleet.mine import BagJob, score_bag
    from ood_perception.fleet.storage import Location

    monkeypatch.setattr(catalog, "ROWS_PER_GROUP", 2)
    folder = Location.parse(tmp_path / "catalog")
    folder.makedirs()
    bag = str(bags[0] / "drive0" / "bag")
    pipeline = PipelineSpec(str(tiny_model_path)).build()
    seen = []
    result = score_bag(pipeline, BagJob(bag, folder, None, 1, "v1"),
                       lambda done: seen.append(sorted(p.name for p in (tmp_path / "catalog")
                                                       .iterdir())))
    assert result["scored"] == 3 and all(names[0].startswith(".") for names in seen)
    (written,) = (tmp_path / "catalog").iterdir()
    assert written.name == catalog.part_name(bag, "v1")
    assert pq.ParquetFile(written).num_row_groups == 2  # rows 1-2, then row 3


def test_mine_catalog_carries_track_ids_and_distances(tmp_path):
    """The catalog's id and distance columns: the bag's camera_info and the params' extrinsics
    put the bright box 10 m ahead, under one id in every frame."""
    from brightness_model import BOX_TOPIC, export_brightness_model, write_box_bag

    from ood_perception.core.ground import CameraPose
    from ood_perception.fleet.catalog import read_catalog
    from ood_perception.fleet.cluster import FleetConfig
    from ood_perception.fleet.inputs import expand_bags
    from ood_perception.fleet.mine import MineConfig, mine
    from ood_perception.fleet.spec import PipelineSpec
    from ood_perception.fleet.storage import Location

    model = export_brightness_model(tmp_path / "brightness.onnx")
    write_box_bag(tmp_path / "bags" / "drive", frames=4)
    pose = CameraPose.from_extrinsics([0.0, 0.0, 1.5, -0.5, 0.5, -0.5, 0.5])
    config = MineConfig(top_k=0, poses={BOX_TOPIC: pose})
    mine(expand_bags([str(tmp_path / "bags")]), PipelineSpec(str(model), "onnxruntime"),
         Location.parse(str(tmp_path / "out")), config, FleetConfig())
    rows = read_catalog(Location.parse(str(tmp_path / "out" / "catalog")), [
        "frame_index", "largest_id", "nearest_id", "nearest_distance_m"]).to_pylist()
    assert [row["frame_index"] for row in sorted(rows, key=lambda r: r["frame_index"])] == [
        0, 1, 2, 3]
    assert {row["largest_id"] for row in rows} == {1} == {row["nearest_id"] for row in rows}
    assert all(abs(row["nearest_distance_m"] - 10.0) < 0.2 for row in rows)
