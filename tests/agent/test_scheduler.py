"""Scheduler: failures and timeouts become check.error Events, other checks keep their cadence, overruns skip."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from agent.main import make_checks, run_once
from agent.scheduler import Scheduler, run_check
from agent.tagging import prepare
from checks.base import Check
from checks.model import CHECK_ERROR, Event, Reading, Sample
from tests.agent.conftest import make_config


def collect() -> tuple[list[tuple[str, Reading]], Any]:
    got: list[tuple[str, Reading]] = []

    def emit(check: Check[Any], readings: list[Reading]) -> None:
        got.extend((check.name, r) for r in readings)

    return got, emit


async def test_failing_and_hanging_checks_become_events_while_another_keeps_its_cadence(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        checks=[
            {"type": "test_tick", "name": "tick", "interval": 0.1, "jitter": 0},
            {"type": "test_fail", "name": "fail", "interval": 0.2, "jitter": 0},
            {"type": "test_hang", "name": "hang", "interval": 2, "timeout": 0.8, "jitter": 0},
        ],
    )
    checks = make_checks(cfg, with_state=False)
    tick, _fail, hang = checks
    got, emit = collect()
    sched = Scheduler(checks, emit)
    sched.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not any(n == "hang" for n, _ in got) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.15)
    await sched.stop()

    fail_events = [r for n, r in got if n == "fail"]
    assert fail_events and all(isinstance(e, Event) and e.kind == CHECK_ERROR for e in fail_events)
    e = fail_events[0]
    assert e.tags == {"check": "fail", "type": "test_fail"}
    assert e.data["reason"] == "error" and "RuntimeError: boom" in e.message and "fail" in e.message
    assert len(fail_events) >= 2  # it ran again at its next slot

    hang_events = [r for n, r in got if n == "hang"]
    assert len(hang_events) == 1
    h = hang_events[0]
    assert isinstance(h, Event) and h.kind == CHECK_ERROR and h.data["reason"] == "timeout" and "timed out after 0.8s" in h.message
    assert len(hang.cancelled) == 1  # the hung run was cancelled by the timeout

    # while the hung check was waiting for its timeout, the tick check kept running on its own interval
    start, end = hang.started[0], hang.cancelled[0]
    during = [t for t in tick.runs if start < t < end]
    assert len(during) >= 3, (start, end, tick.runs)
    # aligned slots: run n never starts before slot n, so there are never more runs than slots (no bursts, no pile-up)
    assert len(tick.runs) <= (tick.runs[-1] - tick.runs[0]) / 0.1 + 1 + 1e-6
    assert sched.stats["fail"].errors == len(fail_events) and sched.stats["hang"].errors == 1
    assert sched.stats["tick"].errors == 0 and sched.stats["tick"].runs == len(tick.runs)
    assert all(isinstance(r, Sample) for n, r in got if n == "tick")


async def test_overrunning_check_skips_slots_instead_of_piling_up(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, checks=[{"type": "test_slow", "name": "slow", "interval": 0.1, "timeout": 2, "jitter": 0, "seconds": 0.25}])
    checks = make_checks(cfg, with_state=False)
    got, emit = collect()
    sched = Scheduler(checks, emit)
    sched.start()
    await asyncio.sleep(0.9)
    await sched.stop()
    slow = checks[0]
    assert slow.runs >= 2
    assert slow.max_active == 1
    assert sched.stats["slow"].skipped >= slow.runs
    assert sched.stats["slow"].errors == 0


async def test_a_check_blocking_the_loop_is_reported() -> None:
    cfg = make_config(Path("/tmp"), checks=[{"type": "test_block", "name": "blk", "timeout": 0.05}])
    (check,) = make_checks(cfg, with_state=False)
    readings, reason, d = await run_check(check)
    assert reason == "blocked" and d >= 0.4
    assert isinstance(readings[0], Sample)
    ev = readings[-1]
    assert isinstance(ev, Event) and ev.kind == CHECK_ERROR and "asyncio.to_thread" in ev.message


async def test_check_returning_garbage_is_an_error() -> None:
    class Weird(Check[Any]):
        async def run(self) -> Any:
            return {"not": "a list"}

    cfg = make_config(Path("/tmp"), checks=[{"type": "test_tick", "name": "weird"}])
    readings, reason, _ = await run_check(Weird(cfg.checks[0]))
    assert reason == "error" and isinstance(readings[0], Event) and "returned dict" in readings[0].message


def test_tag_precedence_and_invalid_readings_dropped() -> None:
    from collections import Counter

    now = time.time()
    invalid: Counter[str] = Counter()
    out = prepare(
        [
            Sample("test.a", 1.0, now, {"cpu": "0", "env": "from-reading", "host": "spoofed"}),
            Sample("Bad Name", 1.0, now, {}),
            Sample("test.b", float("nan"), now, {}),
            Event("check.error", now, "m", {}, {"obj": object()}),
        ],
        {"env": "global", "role": "db"},
        "h1",
        source="c1",
        invalid=invalid,
        check_type="test_tick",
    )
    assert invalid["c1"] == 3
    assert isinstance(out[0], Sample) and out[0].tags == {"cpu": "0", "env": "from-reading", "role": "db", "host": "h1"}
    assert len(out) == 2
    err = out[1]
    assert isinstance(err, Event) and err.kind == CHECK_ERROR and err.data["reason"] == "invalid_reading" and err.data["count"] == 3
    assert "Bad Name" in err.message and err.tags["host"] == "h1"


async def test_run_once_applies_tags_and_reports_errors(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        checks=[
            {"type": "test_tick", "name": "t", "tags": {"role": "web", "env": "check-level"}},
            {"type": "test_fail", "name": "f"},
            {"type": "test_hang", "name": "h", "timeout": 0.2},
            {"type": "test_tick", "name": "off", "enabled": False},
        ],
        tags={"env": "prod", "dc": "eu1"},
    )
    readings = await run_once(cfg)
    by_check = {r.tags.get("check", "t"): r for r in readings}
    assert set(by_check) == {"t", "f", "h"}
    t = by_check["t"]
    assert isinstance(t, Sample) and t.tags == {"role": "web", "env": "check-level", "dc": "eu1", "host": "testhost"}
    assert isinstance(by_check["f"], Event) and by_check["f"].data["reason"] == "error" and by_check["f"].tags["dc"] == "eu1"
    assert isinstance(by_check["h"], Event) and by_check["h"].data["reason"] == "timeout"
