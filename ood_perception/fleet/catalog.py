"""The mining catalog: a folder of Parquet files, one per bag, one row per image message.

Read it whole with `pyarrow.parquet.read_table(folder)` (or pandas, DuckDB, Spark). A bag's
file (one per bag and model version) appears only once the bag is complete, so a re-run with
the same model skips exactly the bags already in it, and a new model scores them all again.
Rows of a bag that could not be read to the end are kept up to the break, followed by one
`bag_failed` row with the reason; such bags are tried again by the next run.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from ood_perception.core.pipeline import FrameResult
from ood_perception.fleet.storage import Location

SCORED, DROPPED, BAG_FAILED = "scored", "dropped", "bag_failed"
PERCENTILE = 99.0  # the high-percentile score column, score_p99
ROWS_PER_GROUP = 4096  # rows a worker holds before writing them out


def schema():
    """The catalog's columns; frame columns are null on `bag_failed` rows, score columns on
    `dropped` ones, `largest_*` where a frame has no obstacle."""
    import pyarrow as pa

    return pa.schema([
        ("bag", pa.string()),  # the bag folder, absolute
        ("topic", pa.string()),
        ("frame_index", pa.int64()),  # 0-based, per topic, in bag order
        ("bag_time_ns", pa.int64()),  # when the bag recorded the message
        ("stamp_ns", pa.int64()),  # the image header's stamp
        ("status", pa.string()),  # scored | dropped | bag_failed
        ("error", pa.string()),  # why a frame was dropped or a bag failed
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("score_max", pa.float32()),
        ("score_p99", pa.float32()),
        ("obstacles", pa.int32()),  # obstacles reported (at most the postprocess cap)
        ("largest_x", pa.int32()),  # box of the largest obstacle, pixels
        ("largest_y", pa.int32()),
        ("largest_width", pa.int32()),
        ("largest_height", pa.int32()),
        ("largest_area", pa.int64()),
        ("largest_score", pa.float32()),  # its highest pixel score
        ("largest_id", pa.int64()),  # its track id (stable across the topic's frames)
        ("nearest_id", pa.int64()),  # the nearest obstacle on the ground (needs calibration)
        ("nearest_distance_m", pa.float32()),  # how far ahead it stands, base_frame metres
        ("model_name", pa.string()),
        ("model_version", pa.string()),  # sha256 of the model file, first 16 hex digits
    ])


def scored_row(result: FrameResult, tracks: list | None = None) -> dict:
    """The score and obstacle columns of one scored frame; `tracks`
    (`core.tracking.Track`s of its obstacles, largest first) fill the id and distance ones."""
    score = result.anomaly_score
    row = {"status": SCORED, "height": int(score.shape[0]), "width": int(score.shape[1]),
           "score_max": float(np.max(score)),
           "score_p99": float(np.percentile(score, PERCENTILE)),
           "obstacles": len(result.obstacles)}
    if result.obstacles:
        largest = result.obstacles[0]  # obstacles come largest first
        x, y, width, height = largest.bbox
        row.update(largest_x=x, largest_y=y, largest_width=width, largest_height=height,
                   largest_area=largest.area, largest_score=largest.score_max)
    seen = [track for track in tracks or [] if track.misses == 0]
    if seen:
        row["largest_id"] = seen[0].id
    placed = [track for track in tracks or [] if track.ground is not None]
    if placed:
        nearest = min(placed, key=lambda track: track.ground.distance)
        row.update(nearest_id=nearest.id, nearest_distance_m=nearest.ground.distance)
    return row


def model_version(path: str) -> str:
    """The first 16 hex digits of the model file's sha256: which weights scored a row."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def part_name(bag: str, version: str) -> str:
    """The file of one bag and model: readable stem plus a hash of the full path and the
    model version (bag names repeat across drives)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", bag.rstrip("/").rsplit("/", 1)[-1])[:60]
    return f"{stem}-{hashlib.sha1(f'{bag}|{version}'.encode()).hexdigest()[:12]}.parquet"


class CatalogPart:
    """One bag's rows, streamed to a hidden file in row groups and moved to `part_name(bag)`
    by `commit()`; memory stays at one row group whatever the bag's length."""

    def __init__(self, catalog: Location, bag: str, model_name: str | None, version: str):
        import pyarrow.parquet as pq

        self.bag, self._model = bag, (model_name, version)
        name = part_name(bag, version)
        self._final = catalog.child(name)
        self._partial = catalog.child(f".{name}.partial")
        self._filesystem, path = self._partial.filesystem()
        self._schema = schema()
        self._writer = pq.ParquetWriter(path, self._schema, filesystem=self._filesystem)
        self._rows: list[dict] = []
        self.counts = {SCORED: 0, DROPPED: 0, BAG_FAILED: 0}

    def add(self, status_row: dict, **frame) -> None:
        """A row: `status_row` (scored_row() or status/error) plus bag/frame columns."""
        row = {"bag": self.bag, "model_name": self._model[0], "model_version": self._model[1],
               **frame, **status_row}
        self.counts[row["status"]] += 1
        self._rows.append(row)
        if len(self._rows) >= ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_batch(pa.RecordBatch.from_pylist(self._rows, self._schema))
            self._rows = []

    def commit(self) -> None:
        self._flush()
        self._writer.close()
        _, partial = self._partial.filesystem()
        _, final = self._final.filesystem()
        self._filesystem.move(partial, final)

    def abort(self) -> None:
        self._writer.close()
        _, partial = self._partial.filesystem()
        self._filesystem.delete_file(partial)


def read_catalog(catalog: Location, columns: list[str] | None = None):
    """Every committed row as one pyarrow Table (empty, with the schema, if none yet)."""
    import pyarrow.dataset as ds

    if not catalog.exists():
        return schema().empty_table().select(columns or schema().names)
    filesystem, path = catalog.filesystem()
    table = ds.dataset(path, filesystem=filesystem, format="parquet",
                       schema=schema()).to_table(columns=columns)
    return table


def finished_bags(catalog: Location, version: str) -> set[str]:
    """Bags this model version completed without failing: the ones a re-run skips."""
    import pyarrow.compute as pc

    table = read_catalog(catalog, ["bag", "status", "model_version"])
    table = table.filter(pc.equal(table["model_version"], version))
    failed = set(table.filter(pc.equal(table["status"], BAG_FAILED))["bag"].to_pylist())
    return set(table["bag"].to_pylist()) - failed
