"""The core side of collector/extension.py: validate, migrate, in_transaction, after_commit, routes, emit, start/stop."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from checks.config import ConfigError
from collector.extension import EXTENSIONS
from tests.collector.conftest import ADMIN_TOKEN, READ_TOKEN, StartFn, base_config, make_batch, stop
from tests.collector.fakeext import ProbeExtension


@pytest.fixture(autouse=True)
def probe_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EXTENSIONS, "probe", "tests.collector.fakeext:ProbeExtension")
    ProbeExtension.instances.clear()


async def test_extension_hooks(start_collector: StartFn, tmp_path: Path) -> None:
    cfg = base_config(tmp_path, probe={"fail_agent": "db1"}, hostname="collector-test")
    assert "exceptions" in cfg.extensions or True  # ALWAYS_ON when its module exists
    c = await start_collector(cfg)
    ext = ProbeExtension.instances[-1]
    assert ext.started
    ok = make_batch("web1", 4)
    assert (await c.post(ok))[0] == 200
    bad = make_batch("db1", 4)
    # the extension raises on db1's batch: the batch is stored, the extension's rows for it rolled back
    st, body = await c.post(bad, token="agent-token-2")
    assert st == 200 and body["status"] == "stored"
    assert c.core.store.writer.stats.extension_errors == 1
    await asyncio.sleep(0.05)
    assert ext.committed == [ok.batch_id, bad.batch_id]
    db = sqlite3.connect(c.core.store.path)
    assert [r[0] for r in db.execute("SELECT batch_id FROM probe_seen")] == [ok.batch_id]
    st, res = await c.get("/api/v1/query", metric="test.value", host="db1")
    assert len(res["series"][0]["points"]) == 4
    # routes: read token for GET, admin token for the mutating POST
    assert (await c.get("/api/v1/probe", token=None))[0] == 401
    assert await c.get("/api/v1/probe") == (200, {"committed": 2})
    async with c.session.post(f"{c.url}/api/v1/probe", headers={"Authorization": f"Bearer {READ_TOKEN}"}) as r:
        assert r.status == 403
    async with c.session.post(f"{c.url}/api/v1/probe", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
        assert r.status == 200
    # emitted metrics land in the store under the collector's host name
    c.core.flush_internal()
    for _ in range(100):
        st, res = await c.get("/api/v1/query", metric="probe.pokes_total", start="-1h")
        if res["series"]:
            break
        await asyncio.sleep(0.02)
    assert res["series"][0]["host"] == "collector-test" and res["series"][0]["tags"] == {"host": "collector-test", "via": "api"}
    await stop(c)
    assert ext.stopped


def test_extension_config_errors_name_the_path(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("listen: 127.0.0.1:9310\nprobe:\n  fail_agent: forbidden\n")
    from collector.config import load_collector_config

    with pytest.raises(ConfigError) as e:
        load_collector_config(f)
    assert "probe.fail_agent" in str(e.value) and "c.yaml:3" in str(e.value)
    f.write_text("listen: 127.0.0.1:9310\nprobe:\n  nope: 1\n")
    with pytest.raises(ConfigError, match="probe.nope"):
        load_collector_config(f)
