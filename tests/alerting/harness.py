"""Runs AlertingExtension on its own: a real aiohttp server on loopback with its routes, batches fed through after_commit.

The collector's store is replaced by `MemStore`, a small in-test reader (a seam: the collector core
is tested elsewhere); it keeps what the test sent so a restarted extension can backfill from it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, AsyncIterator

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from alerting.service import AlertingExtension
from checks.model import Batch, Event, Sample
from collector.extension import ExtensionContext

WRITE_TOKEN = "write-token"
READ_TOKEN = "read-token"
_ids = itertools.count(1)


class MemStore:
    """StoreReader over the batches the test sent (thread-safe enough for the engine's reads)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.batches: list[Batch] = []

    def query(self, metric: str, tags: dict[str, str], start: float, end: float, step: float | None, agg: str | None,
              host: str | None = None) -> list[dict[str, Any]]:
        series: dict[tuple[Any, ...], dict[str, Any]] = {}
        for b in list(self.batches):
            for s in b.samples:
                if s.name != metric or not start <= s.ts <= end:
                    continue
                # like collector.reader: the agent is the series' host, apart from the tags
                host = s.tags.get("host", b.agent)
                t = {k: v for k, v in s.tags.items() if k != "host"}
                key = (host, *sorted(t.items()))
                series.setdefault(key, {"metric": metric, "host": host, "tags": t, "points": []})["points"].append([s.ts, s.value])
        return list(series.values())

    def hosts(self) -> list[dict[str, Any]]:
        seen: dict[str, float] = {}
        for b in self.batches:
            seen[b.agent] = max(seen.get(b.agent, 0.0), b.sent_at)
        return [{"host": h, "last_seen": t, "status": "up"} for h, t in seen.items()]

    def events(self, kind: str | None, start: float, end: float, host: str | None, limit: int) -> list[dict[str, Any]]:
        out = []
        for b in self.batches:
            for e in b.events:
                if (kind is None or e.kind == kind) and start <= e.ts <= end:
                    out.append({"kind": e.kind, "ts": e.ts, "host": b.agent, "message": e.message, "tags": e.tags,
                                "data": e.data})
        return sorted(out, key=lambda d: -d["ts"])[:limit]


def require_write(request: web.Request) -> None:
    if request.headers.get("Authorization") != f"Bearer {WRITE_TOKEN}":
        raise web.HTTPForbidden(text="a write token is required")


@dataclass
class Running:
    ext: AlertingExtension
    client: TestClient
    store: MemStore
    emitted: list[Sample] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    async def send(self, agent: str, samples: list[tuple[str, float, dict[str, str]]] = (), events: list[Event] = (),  # type: ignore[assignment]
                   ts: float | None = None) -> Batch:
        ts = ts or time.time()
        b = Batch(f"b{next(_ids):010d}", agent, ts, [Sample(n, v, ts, dict(t)) for n, v, t in samples], list(events))
        self.store.batches.append(b)
        await self.ext.after_commit(b)
        return b

    async def api(self, method: str, path: str, body: Any = None, *, write: bool = False, status: int | None = 200) -> Any:
        headers = {"Authorization": f"Bearer {WRITE_TOKEN if write else READ_TOKEN}"}
        async with self.client.request(method, path, json=body, headers=headers) as r:
            data = await r.json(content_type=None) if r.content_type == "application/json" else await r.text()
            if status is not None:
                assert r.status == status, (r.status, data)
            return data

    async def alerts(self, **q: str) -> list[dict[str, Any]]:
        qs = "&".join(f"{k}={v}" for k, v in q.items())
        return (await self.api("GET", "/api/v1/alerts" + (f"?{qs}" if qs else "")))["alerts"]

    async def wait_alert(self, pred: Any, timeout: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for a in await self.alerts():
                    if pred(a):
                        return a
                await asyncio.sleep(0.05)


def section(receivers: list[dict[str, Any]], rules: list[dict[str, Any]], route: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return {"evaluation_interval": 0.1, "default_rules": False, "receivers": receivers, "rules": rules,
            "route": route or {"receiver": receivers[0]["name"], "group_by": ["alertname", "host"], "group_wait": 0, "group_interval": 0.2,
                               "repeat_interval": 3600},
            **kw}


def webhook(name: str, url: str, path: str = "webhook", **kw: Any) -> dict[str, Any]:
    return {"name": name, "notifiers": [{"type": "webhook", "url": f"{url}/{path}", **kw}],
            "retry": {"initial_backoff": 0.05, "max_backoff": 0.2, "max_attempts": 10}}


@contextlib.asynccontextmanager
async def running(tmp_path: Path, raw: dict[str, Any], store: MemStore | None = None, *, config_file: str | None = None) -> AsyncIterator[Running]:
    store = store or MemStore(str(tmp_path / "store.db"))
    emitted: list[Sample] = []
    cfg = AlertingExtension.validate(raw, "alerting")
    ctx = ExtensionContext(
        collector_config=SimpleNamespace(public_url="http://collector.test:8080", config_file=config_file),
        data_dir=tmp_path, store=store,
        emit_metric=lambda n, v, t: emitted.append(Sample(n, v, time.time(), dict(t))),
        emit_samples=emitted.extend, require_write=require_write,
    )
    ext = AlertingExtension(cfg, ctx)
    conn = sqlite3.connect(store.path)
    ext.migrate(conn)
    conn.commit()
    conn.close()
    app = web.Application()
    app.add_routes(ext.routes())

    async def on_start(_app: web.Application) -> None:
        await ext.start(_app)

    async def on_clean(_app: web.Application) -> None:
        await ext.stop()

    app.on_startup.append(on_start)
    app.on_cleanup.append(on_clean)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Running(ext, client, store, emitted)
    finally:
        await client.close()
