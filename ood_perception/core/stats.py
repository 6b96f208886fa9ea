"""Running statistics for `/diagnostics`: rate, latency percentiles, stage times, drops.

ROS-free and thread-safe: the worker records, a timer thread takes snapshots.
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
            self._arrivals.append(arrival)
            self._trim(arrival)
            if stamp_s is not None and now_s is not None:
                self._latencies.append((now_s - stamp_s) * 1000.0)
            for stage, ms in (timings or {}).items():
                samples = self._stages.setdefault(stage, deque(maxlen=self._max_samples))
                samples.append(float(ms))

    def record_drop(self, reason: str, count: int = 1) -> None:
        """A frame that was not processed, e.g. "bad_step", "queue_full", "stale"."""
        with self._lock:
            self._drops[reason] += count

    def _trim(self, now: float) -> None:
        while self._arrivals and now - self._arrivals[0] > self.window_s:
            self._arrivals.popleft()

    def snapshot(self) -> dict:
        """Plain dict of floats/ints (and `drops`: reason -> count) for a diagnostics message."""
        now = self._clock()
        with self._lock:
            self._trim(now)
            arrivals = list(self._arrivals)
            latencies = np.array(self._latencies, dtype=np.float64)
            stages = {name: np.array(values) for name, values in self._stages.items()}
            drops = dict(self._drops)
            frames = self._frames
        rate = 0.0
        if len(arrivals) >= 2 and arrivals[-1] > arrivals[0]:
            rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
        result: dict = {"frames_total": frames, "rate_hz": rate}
        for percentile in PERCENTILES:
            value = float(np.percentile(latencies, percentile)) if latencies.size else float("nan")
            result[f"latency_p{percentile}_ms"] = value
        for name, values in sorted(stages.items()):
            result[f"{name}_mean_ms"] = float(values.mean())
            result[f"{name}_p99_ms"] = float(np.percentile(values, 99))
        result["drops_total"] = sum(drops.values())
        result["drops"] = drops
        return result
