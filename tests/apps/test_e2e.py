"""End to end with real processes: infrawatch_sdk → two real agents (local ingest) → the real collector → its API."""

from __future__ import annotations

import random
import re
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import pytest

import infrawatch_sdk as iw
from checks.sketch import DEFAULT_ALPHA
from tests.e2e.procs import Proc, Stack
from tests.servers.net import free_port, wait_port


def _charge(order: int) -> None:
    raise RuntimeError(f"card declined for order {order}")


def _rss_kib(pid: int) -> int:
    m = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) if m else 0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Stack, list[tuple[Proc, int]]]]:
    ports = [free_port(), free_port()]
    st = Stack(tmp_path, [{"type": "memory", "interval": 30}],
               agent_extra=f"local_ingest:\n  listen: 127.0.0.1:{ports[0]}\n  interval: 1s\n"
                           "  module_rules:\n    payment:\n      url_prefixes: [/pay]\n")
    # a second host: same collector, its own state dir and ingest port
    text = (tmp_path / "agent.yaml").read_text()
    text = text.replace(f"host: {st.host}", "host: e2e-host-2").replace(f"{tmp_path}/agent", f"{tmp_path}/agent2")
    text = text.replace(f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}")
    (tmp_path / "agent2.yaml").write_text(text)
    agent2 = Proc("agent2", ["agent", "-c", str(tmp_path / "agent2.yaml")], tmp_path / "agent2.log")
    try:
        st.start_collector()
        st.agent.start()
        agent2.start()
        for p in ports:
            wait_port("127.0.0.1", p, timeout=30)
        yield st, [(st.agent, ports[0]), (agent2, ports[1])]
    finally:
        agent2.stop()
        st.close()


def test_sdk_agent_collector_groups_p95_and_storm(stack: tuple[Stack, list[tuple[Proc, int]]]) -> None:
    st, agents = stack
    rng = random.Random(3)
    durations: list[float] = []
    clients = []
    for _proc, port in agents:
        c = iw.Client(f"http://127.0.0.1:{port}", service="shop", flush_interval=0.05, queue_size=200_000)
        clients.append(c)
        for i in range(3):
            try:
                _charge(i)
            except RuntimeError as e:
                c.capture_exception(e, module="payment")
        for _ in range(500):
            d = rng.lognormvariate(-3, 0.7)
            durations.append(d)
            c.record_request(d, "POST /pay/{id}", "POST", 200)
        assert c.flush(10)

    def group() -> Any:
        gs = st.get("/api/v1/exceptions", window="1h")["groups"]
        return gs if gs and gs[0]["count"] == 6 and len(gs[0]["hosts"]) == 2 else None

    (g,) = st.wait_for(group, what="one exception group with the summed count from two hosts")
    assert g["type"] == "RuntimeError" and g["module"] == "payment" and sorted(g["hosts"]) == ["e2e-host", "e2e-host-2"]
    d = st.get(f"/api/v1/exceptions/{g['id']}")
    assert "card declined" in d["sample_stack"] and d["sample_frames"][-1]["function"] == "_charge"

    def perf() -> Any:
        items = st.get("/api/v1/perf/endpoints", window="1h")["items"]
        return items if items and items[0]["count"] == 1000 else None

    (item,) = st.wait_for(perf, what="1000 timed requests")
    true_p95 = sorted(durations)[int(0.95 * (len(durations) - 1))]
    assert abs(item["p95_seconds"] - true_p95) <= DEFAULT_ALPHA * true_p95 * 1.0001
    assert item["module"] == "payment" and item["endpoint"] == "POST /pay/{id}"

    # the exceptions series for alerting / Zabbix
    series = st.wait_for(lambda: st.query("app.exceptions.count"), what="app.exceptions.count series")
    assert {s["tags"].get("module") for s in series} == {"payment"}

    # a storm: 100,000 identical exceptions through one agent — counted exactly, stored once
    c = clients[0]
    try:
        _charge(99)
    except RuntimeError as e:
        storm_exc = e
    for _ in range(100_000):
        c.capture_exception(storm_exc, module="payment")
    assert c.flush(30), c.stats()
    assert sum(c.stats()["dropped"].values()) == 0, c.stats()
    counts: list[int] = []

    def storm_done() -> bool:
        counts.append(st.get("/api/v1/exceptions")["groups"][0]["count"])
        return counts[-1] == 100_006

    try:
        st.wait_for(storm_done, timeout=60, what="exact storm count")
    except AssertionError:
        raise AssertionError(f"storm count: seen {counts[-3:]}, sdk {c.stats()}\n{st.agent.output()}\n{st.collector.output()}") from None
    for proc, _port in agents:
        assert proc.alive() and _rss_kib(proc.pid) < 400_000
    assert st.collector.alive() and _rss_kib(st.collector.p.pid) < 600_000  # type: ignore[union-attr]
    db = next(Path(st.tmp, "collector").rglob("*.db"))
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "app_exc_occurrences" in tables:
            assert conn.execute("SELECT COUNT(*) FROM app_exc_occurrences").fetchone()[0] < 100
    for c in clients:
        c.enabled = False
