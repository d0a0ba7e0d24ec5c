"""Harnesses for the application-exceptions tests: the real local-ingest server and the real collector
extension (SQLite database + aiohttp routes), each on its own event-loop thread on loopback.

`RecordingAgent` stands in for `agent.main.Agent` only as the receiver of `submit()` (it tags readings the
way the agent does, with `agent.tagging.prepare`); the end-to-end test in test_e2e.py uses the real agent.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from agent.ingest import Config, Ingest, serve
from agent.tagging import prepare
from checks.config import from_dict
from checks.model import Batch, Reading, Sample, new_batch_id
from collector.exceptions import ExceptionsExtension


class LoopThread:
    """An asyncio loop on a daemon thread; `call(coro_fn)` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call_sync(self, fn: Callable[[], Any], timeout: float = 60) -> Any:
        async def run() -> Any:
            return fn()

        return self.call(run(), timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class RecordingAgent:
    """Receives `submit(readings)` like the agent and tags them with its host name."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.readings: list[Reading] = []

    def submit(self, readings: list[Reading], *, source: str = "submit") -> None:
        self.readings.extend(prepare(readings, {}, self.host, source=source))

    def take_batch(self) -> Batch:
        rs, self.readings = self.readings, []
        return Batch(new_batch_id(), self.host, rs[0].ts if rs else 1.8e9,
                     [r for r in rs if isinstance(r, Sample)], [r for r in rs if not isinstance(r, Sample)])


class IngestServer:
    """The real `agent.ingest.serve` on 127.0.0.1:<free port> with a long interval; `flush()` forces one."""

    def __init__(self, lt: LoopThread, host: str = "host-a", **cfg: Any) -> None:
        self.lt = lt
        # the harness flushes when the test says so: no timed flushes (interval) and no exceptions' fast lane
        # (tests/apps/test_fastpath.py covers that)
        self.config = from_dict(Config, {"listen": "127.0.0.1:0", "interval": "1h", "exception_flush": 0, **cfg})
        self.agent = RecordingAgent(host)
        self.ingest = Ingest(self.config)

        async def start() -> tuple[asyncio.Event, asyncio.Task[None], Any]:
            stop = asyncio.Event()
            ready = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(serve(self.config, self.agent, stop, ready=ready, ingest=self.ingest))
            addr = await ready
            return stop, task, addr

        self._stop, self._task, addr = lt.call(start())
        self.port = addr[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def flush(self) -> Batch:
        def f() -> None:
            rs = self.ingest.flush()
            if rs:
                self.agent.submit(rs, source="local_ingest")

        self.lt.call_sync(f)
        return self.agent.take_batch()

    def close(self) -> None:
        async def stop() -> None:
            self._stop.set()
            await self._task

        self.lt.call(stop())


@dataclass
class _Store:
    path: str


class CollectorExt:
    """The real ExceptionsExtension over a real SQLite file, its routes served by aiohttp on loopback."""

    def __init__(self, lt: LoopThread, tmp: Path, **cfg: Any) -> None:
        from aiohttp import web

        from checks.config import from_dict as fd
        from collector.exceptions import ExceptionsConfig
        from collector.extension import ExtensionContext

        self.lt = lt
        self.db = str(tmp / "store.db")
        self.conn = sqlite3.connect(self.db, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.emitted: list[Sample] = []
        ctx = ExtensionContext(
            collector_config=None, data_dir=tmp, store=_Store(self.db),  # type: ignore[arg-type]
            emit_metric=lambda n, v, t: self.emitted.append(Sample(n, v, 0.0, t)),
            emit_samples=self.emitted.extend, require_write=lambda r: None,
        )
        self.ext = ExceptionsExtension(fd(ExceptionsConfig, cfg, "exceptions"), ctx)
        self.conn.execute("BEGIN")
        self.ext.migrate(self.conn)
        self.conn.execute("COMMIT")

        async def start() -> tuple[Any, int]:
            app = web.Application()
            app.router.add_routes(self.ext.routes())
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            return runner, runner.addresses[0][1]

        self.runner, self.port = lt.call(start())
        self.url = f"http://127.0.0.1:{self.port}"

    def ingest(self, batch: Batch) -> None:
        """What the collector core does per accepted batch: in_transaction, commit, after_commit."""
        self.conn.execute("BEGIN")
        try:
            self.ext.in_transaction(self.conn, batch)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        self.lt.call(self.ext.after_commit(batch))

    def get(self, path: str) -> tuple[int, Any]:
        return http_get(self.url + path)

    def close(self) -> None:
        self.lt.call(self.runner.cleanup())
        self.conn.close()


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, body.decode(errors="replace")


def http_post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
            try:
                return r.status, json.loads(data or b"null")
            except ValueError:
                return r.status, data
    except urllib.error.HTTPError as e:
        data = e.read()
        try:
            return e.code, json.loads(data)
        except ValueError:
            return e.code, data.decode(errors="replace")
