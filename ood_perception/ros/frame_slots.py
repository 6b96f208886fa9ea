"""Newest-frame hand-over between subscription callbacks and the inference worker.

Each camera has one slot. A callback only stores its message (never blocks on inference);
a frame that is overwritten before the worker takes it is counted as "superseded". The
worker takes every filled slot at once, so cameras that arrive together share one batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PendingFrame:
    """A received, not yet decoded message of camera `camera` and when it arrived."""

    camera: int
    message: Any
    received_s: float


class FrameSlots:
    """One newest-frame slot per camera, shared by callbacks and one worker thread."""

    def __init__(self, cameras: int, on_superseded: Callable[[int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._slots: list[PendingFrame | None] = [None] * cameras
        self._condition = threading.Condition()
        self._closed = False
        self._on_superseded = on_superseded
        self._clock = clock

    def put(self, camera: int, message: Any) -> bool:
        """Store the newest message of `camera`, replacing (and reporting) an untaken one;
        False (nothing stored) once closed."""
        with self._condition:
            if self._closed:
                return False
            superseded = self._slots[camera] is not None
            self._slots[camera] = PendingFrame(camera, message, self._clock())
            self._condition.notify()
        if superseded and self._on_superseded is not None:
            self._on_superseded(camera)
        return True

    def take(self, timeout: float, batch_wait: float = 0.0) -> list[PendingFrame]:
        """Wait up to `timeout` s for a frame, then up to `batch_wait` s for the other cameras.

        Returns the taken frames (empty on timeout or after `close`), emptying their slots.
        """
        with self._condition:
            if not self._condition.wait_for(self._any_or_closed, timeout):
                return []
            if batch_wait > 0 and not self._closed:
                self._condition.wait_for(self._all_or_closed, batch_wait)
            if self._closed:
                return []
            taken = [slot for slot in self._slots if slot is not None]
            self._slots = [None] * len(self._slots)
            return taken

    def close(self) -> list[PendingFrame]:
        """Wake the worker for good; later `take` calls return at once with nothing and
        `put` discards. Returns the frames still waiting, for the caller to account for."""
        with self._condition:
            self._closed = True
            left = [slot for slot in self._slots if slot is not None]
            self._slots = [None] * len(self._slots)
            self._condition.notify_all()
        return left

    def _any_or_closed(self) -> bool:
        return self._closed or any(slot is not None for slot in self._slots)

    def _all_or_closed(self) -> bool:
        return self._closed or all(slot is not None for slot in self._slots)
