"""The metric catalogue: every metric infrawatch emits, with its unit, kind, meaning and tags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    #: percent, bytes, bytes_per_second, seconds, count, per_second, ratio, bool, days, state, ...
    unit: str
    kind: Literal["gauge", "counter", "rate"]
    description: str
    tags: tuple[str, ...] = ()


# Metrics not owned by a check: the agent's and the collector's own health, and application
# metrics derived by the collector. Checks declare theirs in their class's METRICS.
AGENT_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("agent.buffer.depth_readings", "count", "gauge", "readings waiting in the agent's disk buffer"),
    MetricSpec("agent.buffer.bytes", "bytes", "gauge", "bytes used by the agent's disk buffer"),
    MetricSpec("agent.buffer.dropped_total", "count", "counter", "readings dropped because the buffer was full (oldest first)"),
    MetricSpec("agent.ship.batches_total", "count", "counter", "batches acknowledged by the collector"),
    MetricSpec("agent.ship.failures_total", "count", "counter", "failed attempts to ship a batch", ("reason",)),
    MetricSpec("agent.check.duration_seconds", "seconds", "gauge", "run time of a check", ("check", "type")),
    MetricSpec("agent.check.errors_total", "count", "counter", "check runs that raised or timed out", ("check", "type")),
    MetricSpec("agent.process.cpu_seconds_total", "seconds", "counter", "CPU seconds used by the agent process"),
    MetricSpec("agent.process.rss_bytes", "bytes", "gauge", "resident memory of the agent process"),
    MetricSpec("agent.ship.rejected_readings_total", "count", "counter", "readings dropped because the collector refused their batch for good (HTTP 400-class)"),
    MetricSpec("agent.check.skipped_total", "count", "counter", "check runs skipped because the previous run overran its interval", ("check", "type")),
    MetricSpec("agent.readings.invalid_total", "count", "counter", "readings dropped before buffering because they break the wire format", ("source",)),
)

EXTRA_METRICS: list[MetricSpec] = []


def register_metrics(*specs: MetricSpec) -> None:
    """Add metrics that are not owned by a check class (collector or application metrics)."""
    EXTRA_METRICS.extend(specs)


def all_metrics() -> dict[str, MetricSpec]:
    """Every metric in the catalogue, keyed by name (imports every registered check)."""
    from checks import CHECKS, load_check_class

    out: dict[str, MetricSpec] = {m.name: m for m in AGENT_METRICS}
    for m in EXTRA_METRICS:
        out[m.name] = m
    for type_name in CHECKS:
        try:
            cls = load_check_class(type_name)
        except Exception:
            continue
        for m in cls.METRICS:
            out[m.name] = m
    return out
