"""The agent daemon: checks → scheduler → disk buffer → shipper → collector, plus self metrics and systemd notify."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from checks import load_check_class
from checks.base import Check
from checks.config import ConfigError
from checks.model import APP_EXCEPTION, Event, Reading
from checks.runtime import sdnotify

from agent.buffer import Buffer
from agent.config import AgentConfig, load_agent_config
from agent.health import Health
from agent.scheduler import Scheduler, run_check
from agent.shipper import Shipper
from agent.tagging import prepare

log = logging.getLogger("infrawatch.agent")

CLOSE_TIMEOUT = 5.0


class StateDirError(RuntimeError):
    """The state dir cannot be created, or another agent process uses it."""


def make_checks(cfg: AgentConfig, *, with_state: bool) -> list[Check[Any]]:
    """Construct the enabled checks of a config (each with its private state dir when `with_state`)."""
    out: list[Check[Any]] = []
    for c in cfg.checks:
        if not c.enabled:
            continue
        sd = None
        if with_state:
            assert c.name is not None
            sd = cfg.check_state_dir(c.name)
            Path(sd).mkdir(parents=True, exist_ok=True, mode=0o750)
        out.append(load_check_class(c.type)(c, state_dir=sd))
    return out


async def close_checks(checks: list[Check[Any]]) -> None:
    async def one(c: Check[Any]) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await c.close()
        except Exception as e:
            log.warning("check did not close cleanly", extra={"check": c.name, "error": f"{type(e).__name__}: {e}"})

    await asyncio.gather(*(one(c) for c in checks))


def _lock_state_dir(state_dir: Path) -> int:
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        fd = os.open(state_dir / "agent.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError as e:
        raise StateDirError(f"cannot use state_dir {state_dir}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StateDirError(f"another agent is already running with state_dir {state_dir}") from None
    return fd


class Agent:
    """One agent: owns the buffer, the checks, the scheduler, the shipper and the self metrics."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.host = cfg.host
        self.base_tags: dict[str, str] = dict(cfg.tags)
        self.invalid: Counter[str] = Counter()
        self.reloading = False
        state = Path(cfg.state_dir)
        self._lock_fd = _lock_state_dir(state)
        self.buffer: Buffer | None = None
        try:
            try:
                self.buffer = Buffer(state, cfg.buffer.max_bytes)
            except (sqlite3.Error, OSError) as e:
                raise StateDirError(f"cannot open the buffer in {state}: {e}") from None
            self.shipper = Shipper(cfg, self.buffer)
            self.checks = make_checks(cfg, with_state=True)
        except BaseException:
            self._release()
            raise
        self.scheduler = Scheduler(self.checks, self._emit_check)
        self.health = Health(
            self.buffer.stats, self.shipper.stats, self.scheduler.stats, self.invalid, self._emit_self, cfg.self_metrics_interval
        )

    # ------------------------------------------------------------ producing readings

    def submit(self, readings: list[Reading], *, source: str = "submit", urgent: bool | None = None) -> None:
        """Queue readings for shipping (host and global tags added). Non-blocking; call from the loop thread.

        Readings that break the wire format are dropped and counted (agent.readings.invalid_total).
        `urgent` readings leave within a fraction of a second (`Shipper.expedite`: still batched, still
        behind any backoff) instead of after ship.flush_interval; by default readings holding an
        application exception (an `app.exception` Event) are urgent, so exception alerts fire within seconds.
        """
        prepared = prepare(readings, self.base_tags, self.host, source=source, invalid=self.invalid)
        self._store(prepared)
        if urgent is None:
            urgent = any(isinstance(r, Event) and r.kind == APP_EXCEPTION for r in prepared)
        if urgent and prepared:
            self.shipper.expedite()

    def _emit_self(self, readings: list[Reading]) -> None:
        self._store(prepare(readings, self.base_tags, self.host, source="agent", invalid=self.invalid))

    def _emit_check(self, check: Check[Any], readings: list[Reading]) -> None:
        tags = {**self.base_tags, **check.config.tags} if check.config.tags else self.base_tags
        self._store(prepare(readings, tags, self.host, source=check.name, invalid=self.invalid, check_type=check.config.type))

    def _store(self, readings: list[Reading]) -> None:
        if not readings or self.buffer is None:
            return
        try:
            self.buffer.append(readings, max_row_readings=self.cfg.ship.max_samples)
        except sqlite3.Error as e:
            self.buffer.stats.dropped += len(readings)
            log.error("cannot write to the buffer, readings lost", extra={"readings": len(readings), "error": str(e), "path": str(self.buffer.path)})

    # ------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event, *, systemd: bool = False) -> None:
        """Run until `stop` is set; then stop the checks, flush within ship.shutdown_timeout, close."""
        assert self.buffer is not None
        ship_stop = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                self.scheduler.start(tg)
                ship_task = tg.create_task(self.shipper.run(ship_stop), name="shipper")
                aux = [tg.create_task(self.health.run(), name="self-metrics")]
                ingest_task = None
                if self.cfg.local_ingest is not None:
                    from agent import ingest  # type: ignore[attr-defined]

                    ingest_task = tg.create_task(ingest.serve(self.cfg.local_ingest, self, stop), name="local-ingest")
                if systemd:
                    sdnotify.notify("READY=1")
                    wd = sdnotify.watchdog_interval()
                    if wd:
                        aux.append(tg.create_task(self._watchdog(wd), name="watchdog"))
                log.info(
                    "agent started",
                    extra={
                        "host": self.host,
                        "checks": ",".join(c.name for c in self.scheduler.checks),
                        "collector": self.cfg.collector.url,
                        "state_dir": self.cfg.state_dir,
                        "buffered": self.buffer.stats.depth,
                    },
                )
                await stop.wait()
                log.info("agent stopping", extra={"buffered": self.buffer.stats.depth})
                if systemd and not self.reloading:
                    sdnotify.notify("STOPPING=1")
                await self.scheduler.stop()
                if ingest_task is not None:
                    done, _ = await asyncio.wait([ingest_task], timeout=CLOSE_TIMEOUT)
                    if not done:
                        ingest_task.cancel()
                for t in aux:
                    t.cancel()
                self.health.emit_now()
                ship_stop.set()
                await ship_task
        finally:
            await close_checks(self.checks)
            self._release()
            log.info("agent stopped", extra={"buffered": self.buffer.stats.depth if self.buffer else 0})

    async def _watchdog(self, interval: float) -> None:
        while True:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _release(self) -> None:
        if self.buffer is not None:
            try:
                self.buffer.close()
            except sqlite3.Error:
                pass
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


async def run_agent(cfg: AgentConfig, stop: asyncio.Event, *, systemd: bool = False) -> None:
    """Run an agent until `stop` is set (used by `infrawatch up` next to a collector)."""
    agent = Agent(cfg)
    await agent.run(stop, systemd=systemd)


async def run_once(cfg: AgentConfig, *, rate_wait: float = 1.0) -> list[Reading]:
    """Run every enabled check once, concurrently, each under its timeout; readings tagged as the agent would.

    Checks that emit rates (per-second values from counter deltas) need two runs: they are run a second
    time after `rate_wait` seconds and their second readings are returned (0 disables that).
    An error or timeout becomes a `check.error` Event. Checks get no state dir (state stays in memory).
    """
    checks = make_checks(cfg, with_state=False)
    try:
        results = list(await asyncio.gather(*(run_check(c) for c in checks)))
        again = [i for i, c in enumerate(checks) if rate_wait > 0 and any(m.kind == "rate" for m in c.METRICS)]
        if again:
            await asyncio.sleep(rate_wait)
            for i, res in zip(again, await asyncio.gather(*(run_check(checks[i]) for i in again))):
                results[i] = res
    finally:
        await close_checks(checks)
    out: list[Reading] = []
    for c, (readings, _reason, _d) in zip(checks, results):
        tags = {**cfg.tags, **c.config.tags}
        out.extend(prepare(readings, tags, cfg.host, source=c.name, check_type=c.config.type))
    return out


async def _serve(cfg: AgentConfig, path: str | None) -> AgentConfig | None:
    """Run one agent with signal handlers; returns a new config when asked to reload (SIGHUP)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    agent = Agent(cfg)
    new_cfg: list[AgentConfig] = []

    def on_term(signame: str) -> None:
        if not stop.is_set():
            log.info("signal received, shutting down", extra={"signal": signame, "flush_timeout": cfg.ship.shutdown_timeout})
        stop.set()

    def on_hup() -> None:
        if not path:
            log.warning("SIGHUP: no config file to reload from; restart the agent instead")
            return
        try:
            fresh = load_agent_config(path)
        except ConfigError as e:
            log.error("reload failed, keeping the running config", extra={"error": str(e)})
            return
        log.info("reloading config", extra={"file": path})
        sdnotify.notify("RELOADING=1")
        new_cfg.append(fresh)
        agent.reloading = True
        stop.set()

    loop.add_signal_handler(signal.SIGTERM, on_term, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, on_term, "SIGINT")
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await agent.run(stop, systemd=True)
    finally:
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(s)
    return new_cfg[-1] if new_cfg else None


def main(cfg: AgentConfig, config_path: str | None = None) -> int:
    """Daemon entry point (`infrawatch agent`): logging, signals, systemd notify; SIGHUP reloads the file."""
    from checks.runtime.logs import setup_logging

    path = config_path or cfg.source
    while True:
        setup_logging(cfg.log.level, cfg.log.format)
        try:
            nxt = asyncio.run(_serve(cfg, path))
        except ConfigError as e:
            log.error("invalid config", extra={"error": str(e)})
            return 2
        except StateDirError as e:
            log.error("cannot start", extra={"error": str(e)})
            return 1
        if nxt is None:
            return 0
        cfg = nxt
