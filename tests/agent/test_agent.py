"""The agent as a whole: in-process (submit, self metrics, state dir lock) and as a real subprocess
(SIGTERM flushes before exit; SIGKILL with unsent readings → resent under the same batch id)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.main import Agent, StateDirError
from checks.catalogue import AGENT_METRICS
from checks.model import Event, Sample
from tests.agent.conftest import TOKEN, StubCollector, make_config, wait_until

ROOT = Path(__file__).resolve().parents[2]


async def test_submit_and_self_metrics_reach_the_collector(tmp_path: Path, collector: StubCollector) -> None:
    cfg = make_config(
        tmp_path,
        collector.url,
        checks=[{"type": "test_tick", "interval": 0.2, "jitter": 0, "tags": {"role": "web"}}, {"type": "test_fail", "interval": 0.2}],
        tags={"env": "test"},
        ship={"flush_interval": 0.1},
        self_metrics_interval=0.3,
    )
    agent = Agent(cfg)
    with pytest.raises(StateDirError, match="another agent"):
        Agent(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await asyncio.sleep(0.05)
    now = __import__("time").time()
    agent.submit([Event("app.exception", now, "ZeroDivisionError", {"module": "payment"}, {"type": "ZeroDivisionError"})])
    agent.submit([Sample("Bad Name", 1.0, now, {})])  # dropped and counted, never shipped
    names = {m.name for m in AGENT_METRICS}
    await wait_until(
        lambda: bool(collector.events("app.exception")) and {"agent.buffer.depth_readings", "agent.check.errors_total"} <= {s.name for s in collector.samples()},
        what="submitted event and self metrics",
    )
    stop.set()
    await task
    ev = collector.events("app.exception")[0]
    assert ev.tags == {"module": "payment", "env": "test", "host": "testhost"}
    tick = collector.samples("test.tick")[0]
    assert tick.tags == {"role": "web", "env": "test", "host": "testhost"}
    errs = collector.events("check.error")
    assert errs and errs[0].tags["check"] == "test_fail" and errs[0].tags["host"] == "testhost"
    self_names = {s.name for s in collector.samples() if s.name.startswith("agent.")}
    assert self_names <= names
    assert {"agent.process.rss_bytes", "agent.process.cpu_seconds_total", "agent.ship.batches_total", "agent.readings.invalid_total"} <= self_names
    inv = [s for s in collector.samples("agent.readings.invalid_total") if s.tags.get("source") == "submit"]
    assert inv and inv[-1].value == 1.0
    err_counts = [s for s in collector.samples("agent.check.errors_total") if s.tags["check"] == "test_fail"]
    assert err_counts and err_counts[-1].value >= 1
    assert not any(s.name == "Bad Name" for s in collector.samples())
    assert collector.duplicates == 0
    Agent(cfg)._release()  # the lock was released at exit


def write_config(tmp_path: Path, url: str, **ship: Any) -> Path:
    cfg = {
        "collector": {"url": url, "token": TOKEN, "timeout": 5},
        "host": "proc-host",
        "state_dir": str(tmp_path / "state"),
        "self_metrics_interval": 60,
        "ship": {"shutdown_timeout": 10, **ship},
        "log": {"level": "debug", "format": "text"},
        "checks": [{"type": "test_tick", "interval": 0.2, "jitter": 0}],
    }
    p = tmp_path / "agent.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


class Proc:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.lines.append(line.decode(errors="replace").rstrip())

    def log(self) -> str:
        return "\n".join(self.lines)

    async def wait(self, timeout: float = 30) -> int:
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        await self._reader
        return rc

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def start_agent(config: Path, extra_env: dict[str, str] | None = None) -> Proc:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    env.update(extra_env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.agent.runner", str(config), cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
    )
    p = Proc(proc)
    try:
        await wait_until(lambda: any("agent started" in line for line in p.lines) or proc.returncode is not None, 30, "agent start")
    except AssertionError:
        await p.kill()
        raise
    assert proc.returncode is None, p.log()
    return p


def key(s: Sample) -> tuple[Any, ...]:
    return (s.name, s.ts, s.value, tuple(sorted(s.tags.items())))


async def test_sigterm_flushes_buffer_before_exit(tmp_path: Path, collector: StubCollector) -> None:
    # flush_interval 60s: nothing ships on its own during the test; only the SIGTERM flush can deliver
    p = await start_agent(write_config(tmp_path, collector.url, flush_interval=60))
    try:
        await asyncio.sleep(1.0)
        before = len(collector.samples("test.tick"))  # at most the very first tick, shipped at start
        assert before <= 1
        p.proc.send_signal(signal.SIGTERM)
        rc = await p.wait()
    finally:
        await p.kill()
    assert rc == 0, p.log()
    ticks = collector.samples("test.tick")
    assert len(ticks) >= before + 3, p.log()
    assert sorted(s.value for s in ticks) == [float(i) for i in range(1, len(ticks) + 1)]
    assert all(s.tags["host"] == "proc-host" for s in ticks)
    assert collector.samples("agent.buffer.depth_readings")  # the final self metrics went too
    assert "flushed buffer before exit" in p.log()


async def test_sigkill_with_unsent_readings_then_restart_resends_same_batch(tmp_path: Path, collector: StubCollector) -> None:
    collector.always = (503, {}, "collector down")
    config = write_config(tmp_path, collector.url, flush_interval=0.2, backoff_initial=0.1, backoff_max=0.2)
    p1 = await start_agent(config)
    try:
        await wait_until(lambda: len(collector.attempts) >= 3, what="failed attempts")
    finally:
        await p1.kill()  # SIGKILL
    assert p1.proc.returncode == -signal.SIGKILL
    failed = list(collector.attempts)
    assert collector.stored == {}
    inflight_ids = {a.batch_id for a in failed}
    assert len(inflight_ids) == 1  # every retry carried the same batch id
    (bid,) = inflight_ids
    unsent = {key(s) for a in failed if a.batch for s in a.batch.samples}
    assert unsent

    collector.always = None
    p2 = await start_agent(config)
    try:
        await wait_until(lambda: bid in collector.stored, what="the in-flight batch resent after restart")
        await asyncio.sleep(0.5)
        p2.proc.send_signal(signal.SIGTERM)
        assert await p2.wait() == 0, p2.log()
    finally:
        await p2.kill()
    first_ok = next(a for a in collector.attempts[len(failed) :] if a.status == 200)
    assert first_ok.batch_id == bid
    stored = [key(s) for b in collector.stored.values() for s in b.samples if s.name == "test.tick"]
    assert len(stored) == len(set(stored))  # nothing twice
    assert unsent <= set(stored)  # nothing lost
    assert collector.duplicates == 0


async def test_sighup_reloads_a_valid_config_and_keeps_running_on_an_invalid_one(tmp_path: Path, collector: StubCollector) -> None:
    config = write_config(tmp_path, collector.url, flush_interval=0.1)
    p = await start_agent(config)
    try:
        await wait_until(lambda: bool(collector.samples("test.tick")), what="first readings")
        good = config.read_text()
        config.write_text(good + "tags:\n  release: two\n")
        p.proc.send_signal(signal.SIGHUP)
        await wait_until(lambda: any(s.tags.get("release") == "two" for s in collector.samples("test.tick")), what="readings with the reloaded tag")
        config.write_text(good + "bogus_key: 1\n")
        p.proc.send_signal(signal.SIGHUP)
        await wait_until(lambda: any("reload failed" in line for line in p.lines), what="reload failure logged")
        assert p.proc.returncode is None
        n = len(collector.samples("test.tick"))
        await wait_until(lambda: len(collector.samples("test.tick")) > n + 1, what="readings after a failed reload")
        p.proc.send_signal(signal.SIGTERM)
        assert await p.wait() == 0, p.log()
    finally:
        await p.kill()
    assert "bogus_key" in p.log()
    assert collector.duplicates == 0


async def test_systemd_ready_watchdog_and_stopping_notifications(tmp_path: Path, collector: StubCollector) -> None:
    import socket

    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.setblocking(False)
    got: list[str] = []

    def drain() -> list[str]:
        while True:
            try:
                got.append(sock.recv(4096).decode())
            except BlockingIOError:
                return got

    p = await start_agent(write_config(tmp_path, collector.url), {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"})
    try:
        await wait_until(lambda: drain().count("WATCHDOG=1") >= 3, what="READY then watchdog pings every 0.2 s")
        assert got[0] == "READY=1"
        p.proc.send_signal(signal.SIGTERM)
        assert await p.wait() == 0, p.log()
        assert "STOPPING=1" in drain()
    finally:
        await p.kill()
        sock.close()


def test_the_agent_does_not_load_aiohttp_pydantic_or_psutil(tmp_path: Path) -> None:
    """They cost RSS (aiohttp alone ~15 MiB): the daemon with the default checks must not import them."""
    import subprocess

    code = (
        "import sys, asyncio\n"
        "from agent.config import AgentConfig\n"
        "from agent.main import Agent, run_once\n"
        f"cfg = AgentConfig.default(collector_url='http://127.0.0.1:9', state_dir={str(tmp_path / 'st')!r})\n"
        "a = Agent(cfg); a._release()\n"
        "asyncio.run(run_once(cfg))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'aiohttp', 'pydantic', 'psutil', 'multidict', 'yarl'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
