"""Device strings ("cpu", "cuda", "cuda:N"): the one parser every runtime and tool uses."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ood_perception.errors import ConfigurationError

DEVICE_HELP = "cpu, cuda or cuda:N"
_PATTERN = re.compile(r"(cpu|cuda)(?::(\d+))?")


@dataclass(frozen=True)
class Device:
    """A parsed device; `index` is None for "cpu" and for "cuda" (the current GPU)."""

    kind: str  # "cpu" or "cuda"
    index: int | None = None

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


def parse_device(text: str, what: str = "device") -> Device:
    """`text` -> Device, or one `ConfigurationError` naming `what` (a parameter or flag)."""
    match = _PATTERN.fullmatch(text) if isinstance(text, str) else None
    if match is None or (match.group(1) == "cpu" and match.group(2) is not None):
        raise ConfigurationError(f"{what} must be {DEVICE_HELP}, got {text!r}")
    index = match.group(2)
    return Device(match.group(1), None if index is None else int(index))
