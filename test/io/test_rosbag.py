"""rosbag2 helpers: real bags in both storages, written and read back with `rosbags`."""

import numpy as np
import pytest
from bag_files import write_images

from ood_perception.errors import ConfigurationError
from ood_perception.io import rosbag as rosbag_io


def _frames(count=3, topic="/cam/image_raw"):
    rng = np.random.default_rng(0)
    return [
        (
            topic,
            1_700_000_000_000_000_000 + i * 50_000_000,
            rng.integers(0, 255, (12, 16, 3), dtype=np.uint8),
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_write_and_read_images(tmp_path, storage):
    frames = _frames()
    bag = tmp_path / "bag"
    write_images(bag, frames, storage=storage, frame_id="cam_optical")
    assert rosbag_io.bag_storage(bag) == storage
    images = list(rosbag_io.read_images(bag))
    assert [i.timestamp for i in images] == [f[1] for f in frames]
    first = images[0]
    assert first.stamp == (frames[0][1] // 10**9, frames[0][1] % 10**9)
    assert (first.frame_id, first.encoding, first.height, first.width) == (
        "cam_optical",
        "rgb8",
        12,
        16,
    )
    assert np.array_equal(first.data.reshape(12, 16, 3), frames[0][2])


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_images_decode(tmp_path, fmt):
    bag = tmp_path / "bag"
    write_images(bag, _frames(1, "/cam/image_raw/compressed"), compressed_format=fmt)
    store = rosbag_io.typestore()
    with rosbag_io.open_reader(bag) as reader:
        (connection,) = rosbag_io.image_connections(reader, ["/cam/image_raw"])
        ((_, _, raw),) = list(reader.messages())
        msg, rgb = rosbag_io.decode(store, connection, raw)
    assert msg.format == fmt and rgb.shape == (12, 16, 3) and rgb.dtype == np.uint8


def test_errors(tmp_path):
    with pytest.raises(ConfigurationError, match="not a rosbag2"):
        rosbag_io.bag_storage(tmp_path)
    for text, message in (("a: [\n", "not valid YAML"), ("- 1\n", "rosbag2_bagfile_information")):
        (tmp_path / "metadata.yaml").write_text(text)
        with pytest.raises(ConfigurationError, match=message):
            rosbag_io.bag_storage(tmp_path)
    bag = tmp_path / "bag"
    write_images(bag, _frames(1))
    with (
        rosbag_io.open_reader(bag) as reader,
        pytest.raises(ConfigurationError, match="not in the bag"),
    ):
        rosbag_io.image_connections(reader, ["/other/image"])
    with pytest.raises(ConfigurationError, match="exists already"):
        write_images(bag, _frames(1))
    with pytest.raises(ConfigurationError, match="storage"):
        write_images(tmp_path / "b2", _frames(1), storage="rosbag1")


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_truncated_bag_is_a_corrupt_bag_error(tmp_path, storage):
    bag = tmp_path / "bag"
    write_images(bag, _frames(6), storage=storage)
    data = next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))
    with open(data, "r+b") as stream:
        stream.truncate(data.stat().st_size // 2)
    with pytest.raises(rosbag_io.CorruptBagError, match="cannot read bag"):
        list(rosbag_io.read_images(bag))


def test_a_bag_ending_before_its_index_says_is_truncated(tmp_path):
    bag = tmp_path / "bag"
    write_images(bag, _frames(4), storage="sqlite3")
    import sqlite3

    with sqlite3.connect(next(bag.glob("*.db3"))) as db:  # a copy that lost its last rows
        db.execute("DELETE FROM messages WHERE id > 2")
    with rosbag_io.open_reader(bag) as reader:
        stream = rosbag_io.stream_messages(reader)
        assert len([next(stream), next(stream)]) == 2
        with pytest.raises(rosbag_io.CorruptBagError, match="ends after 2 of the 4"):
            next(stream)
