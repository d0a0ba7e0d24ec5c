"""Agent self metrics end to end: real collector + agent subprocesses; check durations, buffer depth, RSS, ship failures and buffer drops across an outage."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

from checks.catalogue import AGENT_METRICS
from tests.e2e.procs import Stack

CHECKS = [{"type": t, "interval": 0.2} for t in ("cpu", "disk", "network")] + [{"type": "memory"}, {"type": "seq", "name": "seq"}]
#: the smallest buffer the agent accepts: a few seconds of outage overflow it
BUFFER_MAX = 64 * 1024
AGENT_EXTRA = f"self_metrics_interval: 0.3s\nbuffer:\n  max_bytes: {BUFFER_MAX}\n"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path, CHECKS, interval=1.0, agent_extra=AGENT_EXTRA)
    yield s
    s.close()


def _last(stack: Stack, metric: str, **tags: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Latest value of every series of `metric` for the stack's host, keyed by its tags (host removed)."""
    params = {f"tag__{k}": v for k, v in tags.items()}
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for s in stack.query(metric, host=stack.host, **params):
        if s["points"]:
            key = tuple(sorted((k, v) for k, v in s["tags"].items() if k != "host"))
            out[key] = s["points"][-1][1]
    return out


def test_agent_self_metrics_reach_the_collector_and_count_an_outage(stack: Stack) -> None:
    names = {m.name for m in AGENT_METRICS}
    for m in ("agent.check.duration_seconds", "agent.buffer.depth_readings", "agent.process.rss_bytes",
              "agent.ship.failures_total", "agent.buffer.dropped_total"):
        assert m in names, f"{m} missing from checks.catalogue.AGENT_METRICS"

    stack.start_collector()
    stack.agent.start()

    # per-check durations, tagged with the check's name and type
    dur = stack.wait_for(lambda: (d := _last(stack, "agent.check.duration_seconds")) and len(d) >= 5 and d, 30, "check durations")
    by_check = {dict(k)["check"]: (dict(k)["type"], v) for k, v in dur.items()}
    assert by_check["seq"][0] == "seq" and by_check["cpu"][0] == "cpu" and by_check["memory"][0] == "memory"
    assert all(0 <= v < 30 for _, v in by_check.values()), by_check
    assert _last(stack, "agent.check.duration_seconds", check="seq", type="seq")

    depth = _last(stack, "agent.buffer.depth_readings")
    assert list(depth) == [()] and depth[()] >= 0
    rss = _last(stack, "agent.process.rss_bytes")[()]
    assert 5 * 2**20 < rss < 2 * 2**30, rss  # a live Python process: megabytes, not bytes or terabytes
    assert _last(stack, "agent.buffer.dropped_total").get((), 0) == 0  # nothing dropped while the collector is up
    failures_before = sum(_last(stack, "agent.ship.failures_total").values())

    # outage: sends fail, and the 64 KiB buffer overflows (the agent logs each drop)
    stack.collector.stop()
    stack.wait_for(lambda: "buffer full" in stack.agent.output() and stack.agent.output().count("collector unreachable") >= 2,
                   30, "failed sends and a full buffer while the collector is down")
    assert stack.agent.alive()
    stack.start_collector()

    def after() -> bool:
        fails = _last(stack, "agent.ship.failures_total")
        dropped = _last(stack, "agent.buffer.dropped_total").get((), 0)
        return sum(fails.values()) > failures_before and dropped > 0

    stack.wait_for(after, 30, "failures_total and dropped_total after the outage")
    fails = _last(stack, "agent.ship.failures_total")
    assert all(dict(k).keys() == {"reason"} for k in fails), fails  # counted by a low-cardinality reason tag
    # the buffer drains again once the collector is back
    stack.wait_for(lambda: _last(stack, "agent.buffer.depth_readings").get((), 1e9) < 2000, 30, "buffer draining")
