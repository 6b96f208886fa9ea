"""Which bags a fleet run reads: bag folders, folders of bags, glob patterns, list files.

A bag is a folder with a rosbag2 `metadata.yaml` or a storage file (`.db3`, `.mcap`): a
recording cut short may lack its metadata, and is then reported as a failed bag instead of
being passed over.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import yaml

from ood_perception.errors import ConfigurationError
from ood_perception.io.rosbag import COMPRESSED, IMAGE

STORAGE_SUFFIXES = (".db3", ".mcap")
GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class BagInput:
    """A bag and the name its outputs take (its path under the folder it was found in)."""

    path: Path
    name: str


def is_bag(folder: Path) -> bool:
    return folder.is_dir() and ((folder / "metadata.yaml").is_file() or any(
        p.suffix in STORAGE_SUFFIXES for p in folder.iterdir()))


def _under(root: Path) -> list[BagInput]:
    """Every bag below `root` (bags do not nest), named by their relative path."""
    found, stack = [], [root]
    while stack:
        folder = stack.pop()
        if is_bag(folder):
            found.append(BagInput(folder, folder.relative_to(root).as_posix()
                                  if folder != root else folder.name))
            continue
        stack.extend(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return found


def _list_file(path: Path) -> list[str]:
    """One bag, folder or pattern per line; `#` comments; relative to the list's folder."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"cannot read bag list {path}: {error}") from error
    entries = [line.split("#", 1)[0].strip() for line in lines]
    return [str(path.parent / e) for e in entries if e]


def expand_bags(specs: list[str | Path]) -> list[BagInput]:
    """The bags `specs` name, in order, each once; names unique (they become output names)."""
    found: list[BagInput] = []
    for spec in specs:
        text = str(spec)
        if GLOB_CHARS & set(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            if not matches:
                raise ConfigurationError(f"no bags match {text!r}")
            found += [b for m in matches for b in (_under(m) if m.is_dir() else [])]
            continue
        path = Path(text)
        if path.is_file():
            found += expand_bags(_list_file(path))
        elif path.is_dir():
            bags = _under(path)
            if not bags:
                raise ConfigurationError(f"{path} holds no rosbag2 folders")
            found += bags
        else:
            raise ConfigurationError(f"bag input {path} does not exist")
    unique, seen = [], set()
    for bag in found:
        key = bag.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(bag)
    names = [b.name for b in unique]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ConfigurationError(
            f"several bags are named {clashes}; give their parent folder instead so the "
            "outputs keep the relative paths apart")
    return unique


def expected_frames(bag: Path, topics: tuple[str, ...] | None = None) -> int:
    """Image messages the bag's metadata.yaml lists (a camera recorded raw and compressed
    counts once, as replay scores it), for progress bars; 0 when it cannot tell."""
    try:
        info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        entries = info["topics_with_message_count"]
        counts = {e["topic_metadata"]["name"]: (e["topic_metadata"]["type"],
                                                 int(e["message_count"])) for e in entries}
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return 0
    images = {t: n for t, (kind, n) in counts.items() if kind in (IMAGE, COMPRESSED)}
    if topics:
        wanted = set(topics) | {f"{t.rstrip('/')}/compressed" for t in topics}
        images = {t: n for t, n in images.items() if t in wanted}
    raw = {t for t in images if counts[t][0] == IMAGE}
    return sum(n for t, n in images.items()
               if not (counts[t][0] == COMPRESSED and t.removesuffix("/compressed") in raw))
