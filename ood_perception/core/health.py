"""OK / WARN / ERROR for each camera and for the model runtime, decided without ROS.

The node turns these decisions into `diagnostic_msgs/DiagnosticStatus` (diagnostic_updater
conventions); everything that decides a level lives here, so every level and reason is
unit-tested. Inputs are `RunningStats.snapshot()` dicts and the runtime facts a backend
reports after loading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ood_perception.errors import ConfigurationError

# Levels, ordered, with the values diagnostic_msgs/DiagnosticStatus uses.
OK, WARN, ERROR = 0, 1, 2
# Drops that are load shedding, not faults: a newer frame replaced this one, in the node's
# slot ("superseded") or in the DDS reader queue ("lost_in_dds"). A node slower than its
# camera shows in rate and latency (`min_rate_hz`, `max_latency_ms`), not as a warning per
# frame.
LOAD_SHEDDING = ("superseded", "lost_in_dds")
# A batch that failed in the backend; the frames in it are counted under this reason.
PROCESSING_ERROR = "processing_error"
# Without `min_rate_hz`, a camera that sent nothing for this long is stalled.
DEFAULT_STALL_S = 2.0
# With `min_rate_hz`, stalled after this many missing periods, but never under STALL_MIN_S.
STALL_PERIODS = 3.0
STALL_MIN_S = 1.0


@dataclass(frozen=True)
class HealthLimits:
    """What a camera must achieve; 0 turns a limit off."""

    # Answered frames per second below which a camera is ERROR.
    min_rate_hz: float = 0.0
    # 90th percentile of latency (node clock now - header stamp) above which it is WARN.
    max_latency_ms: float = 0.0

    def __post_init__(self) -> None:
        for name in ("min_rate_hz", "max_latency_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value >= 0):
                raise ConfigurationError(f"{name} must be a number >= 0 (0 = off), got {value!r}")

    @property
    def stall_s(self) -> float:
        """Seconds without a frame after which a camera that sent frames is stalled."""
        if self.min_rate_hz > 0:
            return max(STALL_MIN_S, STALL_PERIODS / self.min_rate_hz)
        return DEFAULT_STALL_S


@dataclass(frozen=True)
class Health:
    """One status: its level and the line an operator reads."""

    level: int
    message: str


def _combine(problems: list[tuple[int, str]], healthy: str) -> Health:
    """The worst level; the message lists every problem, worst first."""
    if not problems:
        return Health(OK, healthy)
    problems = sorted(problems, key=lambda problem: -problem[0])
    return Health(problems[0][0], "; ".join(text for _, text in problems))


def new_drops(drops: dict[str, int], previous: dict[str, int]) -> dict[str, int]:
    """Drops by reason since the `previous` report (reason -> count, only those that grew)."""
    return {reason: count - previous.get(reason, 0) for reason, count in sorted(drops.items())
            if count > previous.get(reason, 0)}


def camera_health(snapshot: dict[str, Any], previous_drops: dict[str, int],
                  limits: HealthLimits, uptime_s: float) -> Health:
    """One camera's level from its stats snapshot, the drops at the last report, and how
    long the node has been listening (`uptime_s`)."""
    stall_s = limits.stall_s
    if snapshot["received_total"] == 0:
        if limits.min_rate_hz > 0 and uptime_s > stall_s:
            return Health(ERROR, f"no image in {uptime_s:.1f} s (min_rate_hz "
                                 f"{limits.min_rate_hz:g})")
        return Health(WARN, "waiting for images")
    problems: list[tuple[int, str]] = []
    received_age, answered_age = snapshot["received_age_s"], snapshot["answered_age_s"]
    rate = snapshot["rate_hz"]
    if received_age > stall_s:
        problems.append((ERROR, f"stalled: no image for {received_age:.1f} s"))
    elif answered_age > stall_s or (math.isnan(answered_age)
                                    and snapshot["receiving_s"] > stall_s):
        waited = snapshot["receiving_s"] if math.isnan(answered_age) else answered_age
        problems.append((ERROR, f"images arrive but none was answered for {waited:.1f} s"))
    elif limits.min_rate_hz > 0 and rate < limits.min_rate_hz:
        problems.append((ERROR, f"{rate:.1f} Hz is below min_rate_hz {limits.min_rate_hz:g}"))
    recent = new_drops(snapshot["drops"], previous_drops)
    if recent.get(PROCESSING_ERROR):
        problems.append((ERROR, f"{recent[PROCESSING_ERROR]} frame(s) failed in the backend"))
    faults = {reason: count for reason, count in recent.items()
              if reason not in (*LOAD_SHEDDING, PROCESSING_ERROR)}
    if faults:
        listed = ", ".join(f"{reason} {count}" for reason, count in faults.items())
        problems.append((WARN, f"{sum(faults.values())} frame(s) dropped ({listed})"))
    p90 = snapshot["latency_p90_ms"]
    if limits.max_latency_ms > 0 and p90 > limits.max_latency_ms:
        problems.append((WARN, f"latency p90 {p90:.0f} ms is above max_latency_ms "
                               f"{limits.max_latency_ms:g}"))
    return _combine(problems, f"{rate:.1f} Hz, latency p50 {snapshot['latency_p50_ms']:.0f} ms")


def runtime_in_use(backend: Any) -> dict[str, str]:
    """What actually runs the model, read from the loaded backend: ONNX Runtime's providers
    after session creation, the torch device and precision, the TensorRT engine."""
    facts = {"backend": str(backend.name), "device_in_use": str(backend.device)}
    providers = getattr(backend, "providers", None)
    if providers is not None:
        facts["providers"] = ", ".join(providers)
        accelerated = any(p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
                          for p in providers)
        facts["device_in_use"] = str(backend.device) if accelerated else "cpu"
    for name in ("precision", "engine_path"):
        value = getattr(backend, name, None)
        if value:
            facts[name] = str(value)
    return facts


def runtime_health(facts: dict[str, str], configured_device: str, failures: int,
                   last_error: str) -> Health:
    """The model status: ERROR while batches fail (`failures` since the last report) or
    when the model runs somewhere else than configured (e.g. ONNX Runtime fell back to CPU
    because its CUDA provider did not load)."""
    problems: list[tuple[int, str]] = []
    if failures > 0:
        problems.append((ERROR, f"inference failing ({failures} batch(es)): {last_error}"))
    in_use = facts["device_in_use"]
    wanted_cuda = configured_device.startswith("cuda")
    if wanted_cuda != in_use.startswith("cuda"):
        detail = f" (providers: {facts['providers']})" if "providers" in facts else ""
        problems.append((ERROR, f"device {configured_device} configured but the model runs on "
                                f"{in_use}{detail}"))
    return _combine(problems, f"{facts['backend']} on {in_use}")
