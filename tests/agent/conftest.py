"""Agent test fixtures: test-only checks in the registry, and a real aiohttp HTTP endpoint standing in for the collector.

The endpoint is a real HTTP server on loopback speaking the collector's batch API (auth, gzip, schema
validation via checks.model, dedup by batch id); its answers can be scripted (503, 500, 400, ...)
to drive the shipper's retry paths, which a real collector cannot be made to produce on demand.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
from aiohttp import web

from agent.config import AgentConfig, parse_agent_config
from checks import CHECKS
from checks.model import Batch, WireError, decode_batch
from tests.agent.fakechecks import TEST_CHECKS
from tests.servers.net import free_port

TOKEN = "test-token-123"


@pytest.fixture(autouse=True)
def test_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in TEST_CHECKS.items():
        monkeypatch.setitem(CHECKS, k, v)


@dataclass
class Attempt:
    at: float  # time.monotonic() when the request arrived
    status: int
    batch_id: str | None
    batch: Batch | None
    headers: dict[str, str]
    peer: Any
    raw_len: int


@dataclass
class StubCollector:
    url: str = ""
    token: str = TOKEN
    #: scripted answers (status, headers, text) used for the next requests, in order
    plan: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    #: when set, every request gets this answer (after the plan)
    always: tuple[int, dict[str, str], str] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    stored: dict[str, Batch] = field(default_factory=dict)
    duplicates: int = 0

    def samples(self, name: str | None = None) -> list[Any]:
        return [s for b in self.stored.values() for s in b.samples if name is None or s.name == name]

    def events(self, kind: str | None = None) -> list[Any]:
        return [e for b in self.stored.values() for e in b.events if kind is None or e.kind == kind]

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        hdrs = {k.lower(): v for k, v in request.headers.items()}
        peer = request.transport.get_extra_info("peername") if request.transport else None

        def record(status: int, batch: Batch | None) -> None:
            self.attempts.append(Attempt(time.monotonic(), status, batch.batch_id if batch else None, batch, hdrs, peer, len(raw)))

        if hdrs.get("authorization") != f"Bearer {self.token}":
            record(401, None)
            return web.Response(status=401, text="missing or wrong token")
        # aiohttp already inflates a Content-Encoding: gzip body; Attempt.raw_len keeps the inflated size
        body = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        try:
            batch = decode_batch(body)
        except WireError as e:
            record(400, None)
            return web.Response(status=400, text=f"bad batch: {e}")
        if self.plan:
            status, h, text = self.plan.pop(0)
        elif self.always is not None:
            status, h, text = self.always
        else:
            status, h, text = 200, {}, '{"ok": true}'
        record(status, batch)
        if 200 <= status < 300:
            if batch.batch_id in self.stored:
                self.duplicates += 1
            else:
                self.stored[batch.batch_id] = batch
        return web.Response(status=status, headers=h, text=text)


@pytest.fixture
async def collector() -> AsyncIterator[StubCollector]:
    stub = StubCollector()
    app = web.Application()
    app.router.add_post("/api/v1/batches", stub.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    stub.url = f"http://127.0.0.1:{port}"
    try:
        yield stub
    finally:
        await runner.cleanup()


def make_config(tmp_path: Path, url: str = "http://127.0.0.1:9", checks: list[dict[str, Any]] | None = None, **over: Any) -> AgentConfig:
    data: dict[str, Any] = {
        "collector": {"url": url, "token": TOKEN, "timeout": 5},
        "host": "testhost",
        "state_dir": str(tmp_path / "state"),
        "checks": checks if checks is not None else [{"type": "test_tick", "interval": 1}],
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(data.get(k), dict):
            data[k] = {**data[k], **v}
        else:
            data[k] = v
    return parse_agent_config(data)


async def wait_until(cond: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
