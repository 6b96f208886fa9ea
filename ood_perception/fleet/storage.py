"""Output locations: a local folder or any URI pyarrow's filesystems understand (s3://,
gs://, hdfs://, file://), so workers on other machines write where the driver reads."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from ood_perception.errors import ConfigurationError


@dataclass(frozen=True)
class Location:
    """A folder on a filesystem; pickles as its URI, so each worker opens its own client."""

    uri: str

    @classmethod
    def parse(cls, text: str | Path) -> Location:
        text = str(text)
        if "://" not in text:
            text = Path(text).absolute().as_uri()
        location = cls(text.rstrip("/"))
        location.filesystem()  # refuse an unknown scheme before any work
        return location

    def filesystem(self):
        """(pyarrow FileSystem, path inside it)."""
        from pyarrow import fs

        try:
            return fs.FileSystem.from_uri(self.uri)
        except Exception as error:  # pyarrow raises ArrowInvalid, OSError or ValueError
            raise ConfigurationError(f"cannot use output location {self.uri}: {error}") from None

    def child(self, *parts: str) -> Location:
        return Location(posixpath.join(self.uri, *parts))

    def makedirs(self) -> None:
        filesystem, path = self.filesystem()
        filesystem.create_dir(path, recursive=True)

    def write_bytes(self, data: bytes) -> None:
        filesystem, path = self.filesystem()
        with filesystem.open_output_stream(path) as stream:
            stream.write(data)

    def exists(self) -> bool:
        from pyarrow import fs

        filesystem, path = self.filesystem()
        return filesystem.get_file_info(path).type != fs.FileType.NotFound
