"""Jitter: the scheduler spreads first runs within [0, jitter] then keeps the cadence; the shipper's retry backoff is exponential, capped and randomised."""

from __future__ import annotations

import asyncio
import random
import types
from pathlib import Path
from typing import Any

import pytest

from agent.buffer import Buffer
from agent.main import make_checks
from agent import scheduler as scheduler_mod
from agent.scheduler import Scheduler
from agent.shipper import CONFIG, RETRY, Outcome, Shipper
from checks.base import Check
from checks.model import Reading, Sample
from tests.agent.conftest import make_config, wait_until
from tests.servers.net import free_port

#: scheduling slack allowed on a loaded 2-core CI machine (loop wake-up latency), not a performance bound
SLACK = 0.25


def _noop(check: Check[Any], readings: list[Reading]) -> None:
    pass


async def _run_ticks(tmp_path: Path, checks: list[dict[str, Any]], until_runs: int) -> tuple[float, list[Any], Scheduler]:
    cfg = make_config(tmp_path, checks=checks)
    made = make_checks(cfg, with_state=False)
    sched = Scheduler(made, _noop)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sched.start()
    try:
        await wait_until(lambda: all(len(c.runs) >= until_runs for c in made), 10, f"{until_runs} runs of every check")
    finally:
        await sched.stop()
    return t0, made, sched


async def test_first_runs_are_spread_within_jitter_then_keep_the_interval(tmp_path: Path) -> None:
    jitter, interval = 0.4, 0.5
    checks = [{"type": "test_tick", "name": f"t{i}", "interval": interval, "jitter": jitter} for i in range(6)]
    t0, made, _ = await _run_ticks(tmp_path, checks, until_runs=3)
    firsts = [c.runs[0] - t0 for c in made]
    assert all(0 <= f <= jitter + SLACK for f in firsts), firsts
    # six independent uniform draws in [0, 0.4]: not all at the same instant
    assert max(firsts) - min(firsts) > 0.01, firsts
    for c in made:
        # later runs stay on the grid anchored at the jittered first run: run k at first + k*interval
        for k, t in enumerate(c.runs[1:], 1):
            slot = c.runs[0] + k * interval
            assert slot - 0.01 <= t <= slot + SLACK, (c.name, k, c.runs)


async def test_jitter_offsets_come_from_uniform_draws_in_zero_to_jitter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic: the draws are scripted, so the first runs must land in that order at those offsets."""
    calls: list[tuple[float, float]] = []
    offsets = iter([0.3, 0.0, 0.15])

    def uniform(a: float, b: float) -> float:
        calls.append((a, b))
        return next(offsets)

    monkeypatch.setattr(scheduler_mod, "random", types.SimpleNamespace(uniform=uniform))
    checks = [{"type": "test_tick", "name": n, "interval": 5, "jitter": 0.3} for n in ("a", "b", "c")]
    t0, made, _ = await _run_ticks(tmp_path, checks, until_runs=1)
    assert calls == [(0.0, 0.3)] * 3
    a, b, c = (m.runs[0] - t0 for m in made)
    assert b < c < a  # ordered as drawn
    for got, want in ((a, 0.3), (b, 0.0), (c, 0.15)):
        assert want - 0.01 <= got <= want + SLACK, (got, want)


async def test_zero_jitter_runs_at_once_and_default_jitter_is_a_tenth_of_the_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[float, float]] = []

    def uniform(a: float, b: float) -> float:
        calls.append((a, b))
        return random.uniform(a, b)

    monkeypatch.setattr(scheduler_mod, "random", types.SimpleNamespace(uniform=uniform))
    checks = [{"type": "test_tick", "name": f"z{i}", "interval": 30, "jitter": 0} for i in range(4)]
    t0, made, _ = await _run_ticks(tmp_path, checks, until_runs=1)
    assert calls == [(0.0, 0.0)] * 4
    assert all(m.runs[0] - t0 <= SLACK for m in made), [m.runs[0] - t0 for m in made]

    cfg = make_config(tmp_path, checks=[{"type": "test_tick", "name": "d1", "interval": 20}, {"type": "test_tick", "name": "d2", "interval": 600}])
    d1, d2 = cfg.checks
    assert d1.effective_jitter == pytest.approx(2.0)
    assert d2.effective_jitter == pytest.approx(5.0)  # capped at 5 s


# ------------------------------------------------------------------ shipper retry backoff


def _shipper(tmp_path: Path, url: str = "http://127.0.0.1:9", **ship: Any) -> tuple[Shipper, Buffer]:
    cfg = make_config(tmp_path, url, ship={"flush_interval": 0.01, **ship})
    buf = Buffer(tmp_path / "state", cfg.buffer.max_bytes)
    return Shipper(cfg, buf), buf


def test_retry_delay_grows_exponentially_up_to_backoff_max_with_full_jitter(tmp_path: Path) -> None:
    sh, buf = _shipper(tmp_path, backoff_initial=1, backoff_max=30)
    out = Outcome(RETRY, "connect")
    cap_seen: list[float] = []
    for n in range(1, 10):
        sh.stats.consecutive_failures = n
        draws = [sh.retry_delay(out) for _ in range(400)]
        cap = min(30.0, 1.0 * 2 ** (n - 1))
        lo = 0.5 if n == 1 else 0.0
        assert all(lo <= d <= cap for d in draws), (n, min(draws), max(draws))
        assert len(set(draws)) > 100, f"delays after {n} failures are not randomised"
        # the spread covers most of the allowed range (full jitter), not a fixed point
        assert max(draws) > lo + 0.8 * (cap - lo) and min(draws) < lo + 0.2 * (cap - lo), (n, min(draws), max(draws))
        cap_seen.append(max(draws))
    # exponential growth until the cap: the largest delay roughly doubles with each failure, then flattens at 30
    for a, b in zip(cap_seen[:4], cap_seen[1:5]):
        assert b > 1.5 * a, cap_seen
    assert all(25 < c <= 30 for c in cap_seen[5:]), cap_seen
    sh.stats.consecutive_failures = 10_000  # no overflow far past the cap
    assert 0 <= sh.retry_delay(out) <= 30
    sh.close()
    buf.close()


def test_retry_after_and_config_errors_override_the_jittered_backoff(tmp_path: Path) -> None:
    sh, buf = _shipper(tmp_path, backoff_initial=1, backoff_max=30)
    sh.stats.consecutive_failures = 1
    assert sh.retry_delay(Outcome(RETRY, "http_503", status=503, retry_after=7)) == 7
    assert sh.retry_delay(Outcome(RETRY, "http_429", status=429, retry_after=3600)) == 30  # capped at backoff_max
    assert sh.retry_delay(Outcome(CONFIG, "auth", status=401)) == 30
    sh.close()
    buf.close()


async def test_run_loop_backs_off_with_growing_randomised_delays_while_collector_is_down(tmp_path: Path) -> None:
    """Through the real run loop: a collector port with nothing listening; record every delay the loop asks for."""
    sh, buf = _shipper(tmp_path, f"http://127.0.0.1:{free_port()}", backoff_initial=0.005, backoff_max=0.04, shutdown_timeout=0.2)
    seen: list[tuple[int, float]] = []
    real = sh.retry_delay

    def spy(out: Outcome) -> float:
        d = real(out)
        seen.append((sh.stats.consecutive_failures, d))
        return d

    sh.retry_delay = spy  # type: ignore[method-assign]
    buf.append([Sample("test.value", 1.0, 1.7e9, {"host": "testhost"})])
    stop = asyncio.Event()
    task = asyncio.create_task(sh.run(stop))
    await wait_until(lambda: len(seen) >= 12, 15, "12 failed attempts")
    stop.set()
    await asyncio.wait_for(task, 15)
    fails = [n for n, _ in seen[:12]]
    assert fails == list(range(1, 13)), fails  # each failed attempt counted, the backoff exponent grows
    for n, d in seen[:12]:
        assert 0 <= d <= min(0.04, 0.005 * 2 ** (n - 1)) + 1e-9, (n, d)
    assert len({d for _, d in seen}) == len(seen), "retry delays repeat: not randomised"
    assert sum(sh.stats.failures.values()) >= 12 and buf.stats.depth == 1  # nothing acknowledged, nothing lost
    sh.close()
    buf.close()
