"""rosbag2 reading and writing without ROS (the `rosbags` library), for replay and tests.

Bags are written as rosbag2 format version 8 (what Jazzy's `ros2 bag` writes; its
offered-QoS string is also read by Humble), in `sqlite3` or `mcap` storage. Messages are
streamed (`stream_messages`), never loaded whole, and a bag that cannot be read to the end
(truncated, corrupt) raises `CorruptBagError` instead of ending early without a word.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ood_perception.errors import ConfigurationError, ImageDecodeError

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
STORAGES = ("sqlite3", "mcap")
BAG_VERSION = 8


class CorruptBagError(ConfigurationError):
    """A bag whose files cannot be read to the end: truncated, overwritten or half-copied."""


def typestore():
    """The ROS 2 Jazzy message definitions bundled with `rosbags`."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def bag_storage(path: str | Path) -> str:
    """`sqlite3` or `mcap`, from the bag's metadata.yaml."""
    metadata = Path(path) / "metadata.yaml"
    if not metadata.is_file():
        raise ConfigurationError(f"{path} is not a rosbag2 folder (no metadata.yaml)")
    try:
        document = yaml.safe_load(metadata.read_text())
    except yaml.YAMLError as error:
        raise ConfigurationError(f"{metadata} is not valid YAML: "
                                 f"{str(error).splitlines()[0]}") from None
    info = document.get("rosbag2_bagfile_information") if isinstance(document, dict) else None
    if not isinstance(info, dict):
        raise ConfigurationError(f"{metadata} has no rosbag2_bagfile_information mapping")
    return str(info.get("storage_identifier", "sqlite3"))


@contextmanager
def open_reader(path: str | Path):
    """A `rosbags` Reader; a missing bag is a ConfigurationError, one whose files do not parse
    a CorruptBagError."""
    from rosbags.rosbag2 import Reader, ReaderError

    try:
        reader = Reader(Path(path))
    except (ReaderError, FileNotFoundError) as error:
        raise ConfigurationError(f"cannot read bag {path}: {error}") from error
    try:
        reader.open()
    except FileNotFoundError as error:
        raise ConfigurationError(f"cannot read bag {path}: {error}") from error
    except Exception as error:  # the storage plugins raise whatever their parsers hit
        raise CorruptBagError(f"cannot read bag {path}: {type(error).__name__}: {error}"
                              ) from error
    try:
        yield reader
    finally:
        reader.close()


def stream_messages(reader, connections: list | None = None) -> Iterator[tuple]:
    """`reader.messages()` one at a time, checked: a read error, or fewer messages than the
    bag's index lists, raises CorruptBagError naming the bag and how far it got."""
    chosen = list(reader.connections if connections is None else connections)
    expected = sum(c.msgcount for c in chosen)
    messages = reader.messages(connections=chosen)
    count = 0
    while True:
        try:
            item = next(messages)
        except StopIteration:
            break
        except Exception as error:  # sqlite3, MCAP and decompression errors alike
            raise CorruptBagError(
                f"bag {reader.path} breaks after {count} of {expected} messages: "
                f"{type(error).__name__}: {error}") from error
        count += 1
        yield item
    if count < expected:
        raise CorruptBagError(f"bag {reader.path} is truncated: it ends after {count} of the "
                              f"{expected} messages its index lists")


@contextmanager
def open_writer(path: str | Path, storage: str = "sqlite3"):
    """A `rosbags` Writer for a new bag folder."""
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

    if storage not in STORAGES:
        raise ConfigurationError(f"unknown bag storage {storage!r}; choose from {STORAGES}")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    try:
        writer = Writer(Path(path), version=BAG_VERSION, storage_plugin=plugin)
        writer.open()
    except WriterError as error:
        raise ConfigurationError(f"cannot write bag {path}: {error}") from error
    try:
        yield writer
    finally:
        writer.close()


def copy_connection(writer, connection, store):
    """Register an input connection in the output bag with its definition and QoS."""
    definition = connection.msgdef.data if connection.msgdef else ""
    qos = getattr(connection.ext, "offered_qos_profiles", [])
    if definition and connection.digest:
        return writer.add_connection(
            connection.topic,
            connection.msgtype,
            msgdef=definition,
            rihs01=connection.digest,
            offered_qos_profiles=qos,
        )
    return writer.add_connection(
        connection.topic, connection.msgtype, typestore=store, offered_qos_profiles=qos
    )


def image_connections(reader, topics: list[str] | None, one_per_camera: bool = False) -> list:
    """Image and CompressedImage connections: all, or those on `topics` (or their
    /compressed). `one_per_camera`: a camera recorded both raw and compressed counts once,
    as its raw images (scoring it twice would write every output twice)."""
    found = [c for c in reader.connections if c.msgtype in (IMAGE, COMPRESSED)]
    if topics:
        wanted = set(topics) | {f"{t.rstrip('/')}/compressed" for t in topics}
        found = [c for c in found if c.topic in wanted]
        seen = {c.topic for c in found} | {c.topic.removesuffix("/compressed") for c in found}
        absent = [t for t in topics if t not in seen]
        if absent:
            available = sorted(c.topic for c in reader.connections)
            raise ConfigurationError(f"topics {absent} not in the bag; it has {available}")
    if one_per_camera:
        raw = {c.topic for c in found if c.msgtype == IMAGE}
        found = [c for c in found if not (c.msgtype == COMPRESSED
                                          and c.topic.removesuffix("/compressed") in raw)]
    return found


def decode(store, connection, raw: bytes) -> tuple[object, np.ndarray]:
    """(the message, RGB uint8 HxWx3) of one image message; ImageDecodeError on bad data."""
    from rosbags.serde import SerdeError

    from ood_perception.core import codec

    try:
        msg = store.deserialize_cdr(raw, connection.msgtype)
    except SerdeError as error:
        raise ImageDecodeError("corrupt_message", f"cannot deserialize a {connection.msgtype} "
                               f"on {connection.topic}: {error}") from None
    if connection.msgtype == COMPRESSED:
        return msg, codec.decode_compressed(msg.format, bytes(msg.data))
    rgb = codec.decode_image(msg.encoding, msg.height, msg.width, msg.step, bytes(msg.data))
    return msg, rgb


def image_message(store, header, array: np.ndarray, encoding: str):
    """A sensor_msgs/Image with the given header (stamp and frame_id kept)."""
    from ood_perception.core import codec

    step, data = codec.encode_image(array, encoding)
    image_type = store.types[IMAGE]
    return image_type(
        header=header,
        height=array.shape[0],
        width=array.shape[1],
        encoding=encoding,
        is_bigendian=int(sys.byteorder == "big"),
        step=step,
        data=np.frombuffer(bytes(data), np.uint8),
    )


@dataclass(frozen=True)
class BagImage:
    """One decoded image message read back from a bag (tests, summaries)."""

    topic: str
    timestamp: int
    stamp: tuple[int, int]
    frame_id: str
    encoding: str
    height: int
    width: int
    data: np.ndarray


def read_images(path: str | Path, topics: list[str] | None = None) -> Iterator[BagImage]:
    """Every Image message of a bag (raw fields, no decoding), in bag order."""
    store = typestore()
    with open_reader(path) as reader:
        connections = [c for c in reader.connections if c.msgtype == IMAGE]
        if topics is not None:
            connections = [c for c in connections if c.topic in topics]
        if not connections:
            return
        for connection, timestamp, raw in stream_messages(reader, connections):
            msg = store.deserialize_cdr(raw, IMAGE)
            yield BagImage(
                connection.topic,
                timestamp,
                (msg.header.stamp.sec, msg.header.stamp.nanosec),
                msg.header.frame_id,
                msg.encoding,
                msg.height,
                msg.width,
                np.asarray(msg.data),
            )
