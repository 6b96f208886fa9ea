"""Running statistics for `/diagnostics`: rate, latency percentiles, stage times, drops,
and the frames a publisher numbered but the node never received.

ROS-free and thread-safe: callbacks and the worker record, a timer thread takes snapshots.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable

import numpy as np

from ood_perception.errors import ConfigurationError

PERCENTILES = (50, 90, 99)


class RunningStats:
    """Frame rate over the last `window_s` seconds; percentiles over the last `max_samples`."""

    def __init__(
        self,
        window_s: float = 5.0,
        max_samples: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not window_s > 0 or max_samples < 1:
            raise ConfigurationError(
                f"stats window must be > 0 s and max_samples >= 1, got {window_s}, {max_samples}")
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._arrivals: deque[float] = deque()
        self._latencies: deque[float] = deque(maxlen=max_samples)
        self._stages: dict[str, deque[float]] = {}
        self._max_samples = max_samples
        self._frames = 0
        self._drops: Counter[str] = Counter()
        self._received = 0
        self._first_received: float | None = None
        self._last_received: float | None = None
        self._last_answered: float | None = None

    def record_received(self) -> None:
        """A message reached the node (before any decoding): what stall detection watches."""
        arrival = self._clock()
        with self._lock:
            self._received += 1
            self._last_received = arrival
            if self._first_received is None:
                self._first_received = arrival

    def record_frame(
        self,
        stamp_s: float | None = None,
        now_s: float | None = None,
        timings: dict[str, float] | None = None,
    ) -> None:
        """One processed frame; latency = `now_s - stamp_s` (same clock, seconds) when given."""
        arrival = self._clock()
        with self._lock:
            self._frames += 1
            self._last_answered = arrival
            self._arrivals.append(arrival)
            self._trim(arrival)
            if stamp_s is not None and now_s is not None:
                self._latencies.append((now_s - stamp_s) * 1000.0)
            for stage, ms in (timings or {}).items():
                samples = self._stages.setdefault(stage, deque(maxlen=self._max_samples))
                samples.append(float(ms))

    def record_drop(self, reason: str, count: int = 1) -> None:
        """Frames that were not answered, e.g. "bad_step", "superseded", "too_old"."""
        if count <= 0:
            return
        with self._lock:
            self._drops[reason] += count

    def _trim(self, now: float) -> None:
        while self._arrivals and now - self._arrivals[0] > self.window_s:
            self._arrivals.popleft()

    def snapshot(self) -> dict:
        """Plain dict of floats/ints (and `drops`: reason -> count) for a diagnostics message.

        `received_age_s`, `answered_age_s` and `receiving_s`: seconds since the last
        received message, the last answered frame and the first received message (NaN: none).
        """
        now = self._clock()
        with self._lock:
            self._trim(now)
            arrivals = list(self._arrivals)
            latencies = np.array(self._latencies, dtype=np.float64)
            stages = {name: np.array(values) for name, values in self._stages.items()}
            drops = dict(self._drops)
            frames, received = self._frames, self._received
            last_received, last_answered = self._last_received, self._last_answered
            first_received = self._first_received
        rate = 0.0
        if len(arrivals) >= 2 and arrivals[-1] > arrivals[0]:
            rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
        nan = float("nan")
        result: dict = {
            "frames_total": frames, "rate_hz": rate, "received_total": received,
            "received_age_s": now - last_received if last_received is not None else nan,
            "answered_age_s": now - last_answered if last_answered is not None else nan,
            "receiving_s": now - first_received if first_received is not None else nan}
        for percentile in PERCENTILES:
            value = float(np.percentile(latencies, percentile)) if latencies.size else float("nan")
            result[f"latency_p{percentile}_ms"] = value
        for name, values in sorted(stages.items()):
            result[f"{name}_mean_ms"] = float(values.mean())
            result[f"{name}_p99_ms"] = float(np.percentile(values, 99))
        result["drops_total"] = sum(drops.values())
        result["drops"] = drops
        return result


# rmw's RMW_MESSAGE_INFO_SEQUENCE_NUMBER_UNSUPPORTED (UINT64_MAX): the middleware does not
# number samples.
SEQUENCE_UNSUPPORTED = 2**64 - 1


class SequenceGaps:
    """Frames a publisher numbered but the node never received, from the sample sequence
    numbers DDS gives every sample (1, 2, 3, ... per publisher).

    The first sample seen sets the baseline (earlier ones were published before the
    subscription matched); a number at or below the last one means a new publisher (a
    restarted camera driver) and sets a new baseline. Numbers from several publishers on
    one topic interleave, so the count is only exact with one publisher per topic.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._last: int | None = None

    def observe(self, sequence: int | None) -> int:
        """The number of samples lost just before this one (0 when unknown or none)."""
        if sequence is None or sequence == SEQUENCE_UNSUPPORTED or sequence <= 0:
            return 0
        with self._lock:
            last, self._last = self._last, sequence
        if last is None or sequence <= last:
            return 0
        return sequence - last - 1

    def reset(self) -> None:
        """Forget the baseline: the next sample starts a new count (e.g. after the topic
        had several publishers, whose numbers cannot be told apart)."""
        with self._lock:
            self._last = None
