"""Check scheduler: each check in its own task, on its own interval (jittered start, no drift), under a timeout.

A check that raises or times out becomes a `check.error` Event and runs again at its next slot; the
other checks are never delayed by it. Checks must not block the event loop: blocking library calls go
through `asyncio.to_thread` (a check that blocks anyway is detected and reported, but it does delay the
others while it blocks). A run that overruns its next slot skips the missed slots instead of piling up.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from checks.base import Check
from checks.model import CHECK_ERROR, Event, Reading, Sample

log = logging.getLogger("infrawatch.agent.scheduler")

#: a run that returns this much past its timeout was not cancelled by it: it blocked the loop
BLOCKED_GRACE = 0.1


@dataclass(slots=True)
class CheckStats:
    """Per-check counters for the agent's self metrics."""

    check: str
    type: str
    runs: int = 0
    errors: int = 0
    skipped: int = 0
    last_duration: float | None = None
    failing: str | None = None  # reason of the current failure streak, None when healthy


def error_event(check: Check[Any], reason: str, message: str, ts: float, duration: float, error: str = "") -> Event:
    return Event(
        CHECK_ERROR,
        ts,
        message,
        {"check": check.name, "type": check.config.type},
        {"reason": reason, "error": error or message, "duration_seconds": round(duration, 6)},
    )


async def run_check(check: Check[Any]) -> tuple[list[Reading], str | None, float]:
    """Run a check once under its timeout. Returns (readings, failure reason or None, duration).

    Never raises (except cancellation): a failure becomes a `check.error` Event among the readings.
    """
    cfg = check.config
    timeout = cfg.effective_timeout
    ts = time.time()
    t0 = time.perf_counter()
    name, ctype = check.name, cfg.type
    try:
        async with asyncio.timeout(timeout) as cm:
            result = await check.run()
    except asyncio.CancelledError:
        raise
    except TimeoutError as e:
        d = time.perf_counter() - t0
        if cm.expired():
            msg = f"check {name} (type {ctype}) timed out after {timeout:g}s"
            return [error_event(check, "timeout", msg, ts, d, "timeout")], "timeout", d
        msg = f"check {name} (type {ctype}) failed: TimeoutError: {e}"
        return [error_event(check, "error", msg, ts, d, f"TimeoutError: {e}")], "error", d
    except Exception as e:
        d = time.perf_counter() - t0
        err = f"{type(e).__name__}: {e}"
        msg = f"check {name} (type {ctype}) failed: {err}"
        return [error_event(check, "error", msg, ts, d, err)], "error", d
    d = time.perf_counter() - t0
    if not isinstance(result, list) or not all(isinstance(r, (Sample, Event)) for r in result):
        bad = type(result).__name__ if not isinstance(result, list) else next(type(r).__name__ for r in result if not isinstance(r, (Sample, Event)))
        msg = f"check {name} (type {ctype}) returned {bad}; a check must return a list of Sample/Event"
        return [error_event(check, "error", msg, ts, d, msg)], "error", d
    if d > timeout + max(BLOCKED_GRACE, 0.1 * timeout):
        msg = (
            f"check {name} (type {ctype}) ran {d:.1f}s, past its {timeout:g}s timeout: it blocked the event loop "
            "(blocking calls must go through asyncio.to_thread)"
        )
        result.append(error_event(check, "blocked", msg, ts, d, msg))
        return result, "blocked", d
    return result, None, d


Emit = Callable[[Check[Any], list[Reading]], None]


class Scheduler:
    """Runs checks forever, each in its own task; hands each run's readings to `emit`."""

    def __init__(self, checks: list[Check[Any]], emit: Emit) -> None:
        self.checks = [c for c in checks if c.config.enabled]
        self.emit = emit
        self.stats: dict[str, CheckStats] = {c.name: CheckStats(c.name, c.config.type) for c in self.checks}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, tg: asyncio.TaskGroup | None = None) -> None:
        for c in self.checks:
            coro = self._loop(c)
            t = tg.create_task(coro, name=f"check:{c.name}") if tg else asyncio.create_task(coro, name=f"check:{c.name}")
            self._tasks.append(t)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _loop(self, check: Check[Any]) -> None:
        cfg = check.config
        interval = float(cfg.interval)
        loop = asyncio.get_running_loop()
        anchor = loop.time() + random.uniform(0.0, cfg.effective_jitter)
        n = 0
        st = self.stats[check.name]
        while True:
            delay = anchor + n * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                readings, reason, d = await run_check(check)
                self._account(check, st, readings, reason, d)
                self.emit(check, readings)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in emit/accounting must not stop this check for good
                log.exception("internal error after a check run", extra={"check": check.name})
            now = loop.time()
            nxt = n + 1
            if anchor + nxt * interval <= now:
                due = math.floor((now - anchor) / interval) + 1
                missed = due - nxt
                st.skipped += missed
                log.warning(
                    "check overran its interval, skipping runs",
                    extra={"check": check.name, "type": cfg.type, "skipped": missed, "interval": interval},
                )
                nxt = due
            n = nxt

    def _account(self, check: Check[Any], st: CheckStats, readings: list[Reading], reason: str | None, d: float) -> None:
        st.runs += 1
        st.last_duration = d
        if reason is None:
            if st.failing is not None:
                log.info("check recovered", extra={"check": check.name, "type": check.config.type})
            st.failing = None
            return
        st.errors += 1
        err = next((r for r in readings if isinstance(r, Event) and r.kind == CHECK_ERROR), None)
        detail = err.data.get("error", "") if err else ""
        level = logging.WARNING if st.failing != reason else logging.DEBUG
        log.log(level, "check failed", extra={"check": check.name, "type": check.config.type, "reason": reason, "error": detail})
        st.failing = reason
