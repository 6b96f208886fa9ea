"""RunningStats: rate over the window, latency percentiles, stage times, drops, threads."""

from __future__ import annotations

import math
import threading

import pytest

from ood_perception.core.stats import SEQUENCE_UNSUPPORTED, RunningStats, SequenceGaps
from ood_perception.errors import ConfigurationError


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_over_sliding_window():
    clock = FakeClock()
    stats = RunningStats(window_s=2.0, clock=clock)
    for _ in range(21):  # 10 Hz for 2 s
        stats.record_frame()
        clock.now += 0.1
    assert stats.snapshot()["rate_hz"] == pytest.approx(10.0, rel=0.06)
    clock.now += 5.0
    snapshot = stats.snapshot()
    assert snapshot["rate_hz"] == 0.0 and snapshot["frames_total"] == 21


def test_latency_percentiles_and_stage_times():
    stats = RunningStats(clock=FakeClock())
    for index in range(100):
        stats.record_frame(stamp_s=10.0, now_s=10.0 + (index + 1) / 1000,
                           timings={"inference": 5.0 + index % 2})
    snapshot = stats.snapshot()
    assert snapshot["latency_p50_ms"] == pytest.approx(50.5)
    assert snapshot["latency_p90_ms"] == pytest.approx(90.1)
    assert snapshot["latency_p99_ms"] == pytest.approx(99.01)
    assert snapshot["inference_mean_ms"] == pytest.approx(5.5)
    assert snapshot["inference_p99_ms"] == pytest.approx(6.0)


def test_no_latency_without_stamps():
    stats = RunningStats()
    stats.record_frame()
    assert math.isnan(stats.snapshot()["latency_p50_ms"])


def test_drop_counters_by_reason():
    stats = RunningStats()
    stats.record_drop("bad_step")
    stats.record_drop("queue_full", 3)
    stats.record_drop("bad_step")
    snapshot = stats.snapshot()
    assert snapshot["drops"] == {"bad_step": 2, "queue_full": 3}
    assert snapshot["drops_total"] == 5


def test_thread_safe_counts():
    stats = RunningStats(window_s=60.0, max_samples=100)

    def work():
        for _ in range(2000):
            stats.record_frame(stamp_s=0.0, now_s=0.01, timings={"inference": 1.0})
            stats.record_drop("stale")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        stats.snapshot()
        thread.join()
    snapshot = stats.snapshot()
    assert snapshot["frames_total"] == 8000 and snapshot["drops"]["stale"] == 8000


@pytest.mark.parametrize(("window", "samples"), [(0.0, 10), (1.0, 0)])
def test_bad_settings(window: float, samples: int):
    with pytest.raises(ConfigurationError):
        RunningStats(window_s=window, max_samples=samples)


def test_received_messages_and_their_age():
    clock = FakeClock()
    stats = RunningStats(clock=clock)
    assert math.isnan(stats.snapshot()["received_age_s"])
    stats.record_received()
    clock.now += 2.5
    snapshot = stats.snapshot()
    assert snapshot["received_total"] == 1 and snapshot["received_age_s"] == 2.5
    stats.record_drop("superseded", 0)
    assert stats.snapshot()["drops"] == {}


def test_sequence_gaps_count_lost_samples_once():
    gaps = SequenceGaps()
    assert gaps.observe(5) == 0  # baseline: earlier samples predate the subscription
    assert gaps.observe(6) == 0
    assert gaps.observe(10) == 3
    assert gaps.observe(2) == 0  # a restarted publisher counts from 1 again
    assert gaps.observe(4) == 1
    assert gaps.observe(None) == 0 and gaps.observe(SEQUENCE_UNSUPPORTED) == 0
    assert gaps.observe(5) == 0
    gaps.reset()
    assert gaps.observe(50) == 0 and gaps.observe(52) == 1
