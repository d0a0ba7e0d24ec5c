"""Issue 2 end to end: a real collector and agent as subprocesses on loopback."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.procs import Stack

SYSTEM = [{"type": t} for t in ("cpu", "memory", "disk", "network", "system")]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path, SYSTEM + [{"type": "seq", "name": "seq"}], interval=1.0)
    yield s
    s.close()


def _meminfo_total() -> int:
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


def _seq_events(stack: Stack) -> list[int]:
    ev = stack.get("/api/v1/events", kind="test.seq", host=stack.host, start=time.time() - 3600, limit=100000)
    items = ev["events"] if isinstance(ev, dict) else ev
    return sorted(int(e["data"]["seq"]) for e in items)


def _seq_points(stack: Stack) -> list[int]:
    series = stack.query("test.seq", host=stack.host)
    return sorted(int(v) for s in series for _, v in s["points"])


def test_system_series_arrive_and_agree_with_os(stack: Stack) -> None:
    stack.start_collector()
    stack.agent.start()

    def have_all() -> bool:
        names = {s["metric"] for s in stack.get("/api/v1/series", host=stack.host).get("series", [])} if isinstance(
            stack.get("/api/v1/series", host=stack.host), dict) else {s["metric"] for s in stack.get("/api/v1/series", host=stack.host)}
        need = {"system.cpu.usage_percent", "system.memory.total_bytes", "system.filesystem.total_bytes", "system.network.rx_bytes_per_second", "system.load.1m"}
        return need <= names

    stack.wait_for(have_all, 30, "cpu, memory, disk, network and load series")
    mem = stack.query("system.memory.total_bytes", host=stack.host)
    assert mem and mem[0]["points"][-1][1] == _meminfo_total()
    cpu_total = stack.query("system.cpu.usage_percent", host=stack.host, tag__cpu="total")
    assert cpu_total and all(0 <= v <= 100 for _, v in cpu_total[0]["points"])
    fs = stack.query("system.filesystem.total_bytes", host=stack.host)
    by_mount = {s["tags"]["mountpoint"]: s["points"][-1][1] for s in fs}
    assert by_mount, "no filesystem reported"
    for mnt, total in by_mount.items():
        st = os.statvfs(mnt)
        assert total == st.f_frsize * st.f_blocks, mnt
    hosts = stack.get("/api/v1/hosts")
    hosts = hosts["hosts"] if isinstance(hosts, dict) else hosts
    assert any(h.get("host", h.get("name")) == stack.host and h["status"] == "up" for h in hosts)


def test_collector_sigkill_outage_loses_nothing_and_duplicates_nothing(stack: Stack) -> None:
    stack.start_collector()
    stack.agent.start()
    stack.wait_for(lambda: len(_seq_events(stack)) >= 2, 30, "first readings")
    stack.collector.kill9()
    time.sleep(5)  # several agent intervals with the collector dead
    stack.start_collector()
    stack.wait_for(lambda: len(_seq_events(stack)) >= 9, 40, "readings taken during the outage")
    assert stack.agent.stop() == 0  # SIGTERM flushes what is buffered
    seq = _seq_events(stack)
    last = seq[-1]
    assert seq == list(range(1, last + 1)), "every reading exactly once"
    assert _seq_points(stack) == list(range(1, last + 1))


def test_agent_sigkill_with_unsent_readings_sends_them_after_restart(stack: Stack) -> None:
    # collector not running: the agent buffers on disk
    stack.agent.start()
    time.sleep(4)
    stack.agent.kill9()
    stack.start_collector()
    stack.agent.start()
    stack.wait_for(lambda: len(_seq_events(stack)) >= 6, 40, "buffered readings after the agent restart")
    assert stack.agent.stop() == 0
    seq = _seq_events(stack)
    assert seq == list(range(1, seq[-1] + 1))
    assert seq[-1] >= 6
