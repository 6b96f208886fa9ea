"""Health decisions: every level and reason for a camera and for the model runtime."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from ood_perception.core.health import (
    ERROR,
    OK,
    WARN,
    HealthLimits,
    camera_health,
    runtime_health,
    runtime_in_use,
)
from ood_perception.core.stats import RunningStats
from ood_perception.errors import ConfigurationError

NAN = math.nan


def snapshot(**changes) -> dict:
    """A healthy 10 Hz camera's snapshot, with `changes`."""
    values = {"frames_total": 100, "received_total": 110, "rate_hz": 10.0,
              "received_age_s": 0.05, "answered_age_s": 0.08, "receiving_s": 11.0,
              "latency_p50_ms": 40.0, "latency_p90_ms": 60.0, "latency_p99_ms": 80.0,
              "drops_total": 10, "drops": {"superseded": 10}}
    return values | changes


def test_waiting_for_images_is_a_warning_until_a_minimum_rate_is_overdue():
    waiting = snapshot(received_total=0, frames_total=0, received_age_s=NAN,
                       answered_age_s=NAN, receiving_s=NAN, drops={})
    health = camera_health(waiting, {}, HealthLimits(), uptime_s=60.0)
    assert (health.level, health.message) == (WARN, "waiting for images")
    limits = HealthLimits(min_rate_hz=5.0)
    assert camera_health(waiting, {}, limits, uptime_s=0.5).level == WARN
    overdue = camera_health(waiting, {}, limits, uptime_s=1.5)
    assert overdue.level == ERROR and "no image in 1.5 s" in overdue.message


def test_a_healthy_camera_is_ok_and_load_shedding_is_no_warning():
    health = camera_health(snapshot(drops={"superseded": 30, "lost_in_dds": 4}),
                           {"superseded": 10}, HealthLimits(min_rate_hz=5.0,
                                                             max_latency_ms=100.0), 20.0)
    assert (health.level, health.message) == (OK, "10.0 Hz, latency p50 40 ms")


def test_dropped_frames_since_the_last_report_warn_and_are_listed():
    drops = {"superseded": 10, "bad_step": 3, "too_old": 1}
    health = camera_health(snapshot(drops=drops), {"superseded": 10, "bad_step": 1},
                           HealthLimits(), 20.0)
    assert health.level == WARN
    assert health.message == "3 frame(s) dropped (bad_step 2, too_old 1)"
    assert camera_health(snapshot(drops=drops), drops, HealthLimits(), 20.0).level == OK


@pytest.mark.parametrize("min_rate,age,stalled", [(0.0, 1.9, False), (0.0, 2.1, True),
                                                  (5.0, 0.9, False), (5.0, 1.1, True),
                                                  (0.5, 5.9, False), (0.5, 6.1, True)])
def test_a_camera_that_stops_is_an_error_within_its_stall_time(min_rate, age, stalled):
    health = camera_health(snapshot(received_age_s=age, answered_age_s=age, rate_hz=10.0),
                           {}, HealthLimits(min_rate_hz=min_rate), 60.0)
    assert (health.level == ERROR) is stalled
    if stalled:
        assert health.message.startswith(f"stalled: no image for {age:.1f} s")


def test_below_the_minimum_rate_is_an_error():
    health = camera_health(snapshot(rate_hz=3.2), {}, HealthLimits(min_rate_hz=5.0), 60.0)
    assert (health.level, health.message) == (ERROR, "3.2 Hz is below min_rate_hz 5")
    assert camera_health(snapshot(rate_hz=3.2), {}, HealthLimits(), 60.0).level == OK


def test_frames_that_arrive_but_are_never_answered_are_an_error():
    never = snapshot(frames_total=0, answered_age_s=NAN, receiving_s=3.0, rate_hz=0.0,
                     drops={"unknown_encoding": 40})
    health = camera_health(never, {}, HealthLimits(), 60.0)
    assert health.level == ERROR
    assert health.message == ("images arrive but none was answered for 3.0 s; 40 frame(s) "
                              "dropped (unknown_encoding 40)")
    just_started = snapshot(frames_total=0, answered_age_s=NAN, receiving_s=0.1, drops={})
    assert camera_health(just_started, {}, HealthLimits(), 60.0).level == OK


def test_latency_above_the_limit_warns():
    limits = HealthLimits(max_latency_ms=50.0)
    health = camera_health(snapshot(), {}, limits, 60.0)
    assert (health.level, health.message) == (WARN, "latency p90 60 ms is above "
                                                    "max_latency_ms 50")
    assert camera_health(snapshot(latency_p90_ms=NAN), {}, limits, 60.0).level == OK


def test_failing_backend_is_an_error_for_the_camera_and_the_runtime():
    drops = {"processing_error": 2}
    health = camera_health(snapshot(drops=drops), {}, HealthLimits(), 60.0)
    assert (health.level, health.message) == (ERROR, "2 frame(s) failed in the backend")
    facts = {"backend": "onnxruntime", "device_in_use": "cpu"}
    failing = runtime_health(facts, "cpu", failures=1, last_error="RuntimeError: boom")
    assert failing.level == ERROR and "RuntimeError: boom" in failing.message
    assert runtime_health(facts, "cpu", 0, "").level == OK


def test_runtime_facts_show_what_runs_not_what_was_asked():
    cpu_fallback = SimpleNamespace(name="onnxruntime", device="cuda:0",
                                   providers=("CPUExecutionProvider",))
    facts = runtime_in_use(cpu_fallback)
    assert facts == {"backend": "onnxruntime", "device_in_use": "cpu",
                     "providers": "CPUExecutionProvider"}
    health = runtime_health(facts, "cuda:0", 0, "")
    assert health.level == ERROR and "runs on cpu" in health.message
    gpu = SimpleNamespace(name="onnxruntime", device="cuda:0",
                          providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert runtime_health(runtime_in_use(gpu), "cuda", 0, "").level == OK
    engine = SimpleNamespace(name="tensorrt", device="cuda:0", precision="fp16",
                             engine_path="/m/model.fp16.engine")
    assert runtime_in_use(engine) == {"backend": "tensorrt", "device_in_use": "cuda:0",
                                      "precision": "fp16",
                                      "engine_path": "/m/model.fp16.engine"}


def test_real_stats_snapshots_feed_the_decision():
    clock = SimpleNamespace(now=0.0)
    stats = RunningStats(window_s=2.0, clock=lambda: clock.now)
    for _ in range(20):
        stats.record_received()
        stats.record_frame(stamp_s=clock.now - 0.03, now_s=clock.now)
        clock.now += 0.1
    limits = HealthLimits(min_rate_hz=5.0, max_latency_ms=100.0)
    assert camera_health(stats.snapshot(), {}, limits, 2.0).level == OK
    clock.now += 1.5
    assert camera_health(stats.snapshot(), {}, limits, 3.5).level == ERROR


@pytest.mark.parametrize("field,value", [("min_rate_hz", -1.0), ("max_latency_ms", NAN),
                                         ("min_rate_hz", "fast")])
def test_bad_limits(field, value):
    with pytest.raises(ConfigurationError, match=field):
        HealthLimits(**{field: value})
