"""Collector test fixtures: a real collector app on a loopback TCP port with a real SQLite store in a temp dir."""

from __future__ import annotations

import gzip
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from checks.model import Batch, Sample, encode_batch, new_batch_id
from collector.app import CORE, make_app
from collector.config import CollectorConfig, collector_config_from_dict

AGENT_TOKEN = "agent-token-1"
OTHER_TOKEN = "agent-token-2"
READ_TOKEN = "read-token-1"
ADMIN_TOKEN = "admin-token-1"


def base_config(tmp: Path, **extra: Any) -> CollectorConfig:
    raw: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "data_dir": str(tmp / "data"),
        "agents": [{"name": "web1", "token": AGENT_TOKEN}, {"name": "db1", "token": OTHER_TOKEN}],
        "read_tokens": [READ_TOKEN],
        "admin_tokens": [ADMIN_TOKEN],
        "self_metrics_interval": 0,
        **extra,
    }
    return collector_config_from_dict(raw)


@dataclass
class Running:
    server: TestServer
    session: aiohttp.ClientSession
    cfg: CollectorConfig

    @property
    def url(self) -> str:
        return str(self.server.make_url(""))

    @property
    def core(self) -> Any:
        return self.server.app[CORE]

    async def post(self, batch: Batch | bytes, token: str | None = AGENT_TOKEN, gz: bool = True,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        body = encode_batch(batch) if isinstance(batch, Batch) else batch
        h = dict(headers or {})
        if gz:
            body = gzip.compress(body)
            h["Content-Encoding"] = "gzip"
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        async with self.session.post(f"{self.url}/api/v1/batches", data=body, headers=h) as r:
            return r.status, await r.json(content_type=None)

    async def get(self, path: str, token: str | None = READ_TOKEN, **params: Any) -> tuple[int, Any]:
        h = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.get(f"{self.url}{path}", params={k.replace("__", "."): str(v) for k, v in params.items()}, headers=h) as r:
            return r.status, await r.json(content_type=None)


def make_batch(agent: str = "web1", n: int = 10, *, name: str = "test.value", t0: float | None = None, step: float = 1.0,
               tags: dict[str, str] | None = None, batch_id: str | None = None) -> Batch:
    t0 = time.time() - n * step if t0 is None else t0
    return Batch(batch_id or new_batch_id(), agent, time.time(),
                 [Sample(name, float(i), t0 + i * step, {"host": agent, **(tags or {})}) for i in range(n)])


StartFn = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_collector(tmp_path: Path) -> AsyncIterator[StartFn]:
    """start_collector(cfg=None, up_mode=False) → Running; every server is closed at the end of the test."""
    running: list[Running] = []

    async def start(cfg: CollectorConfig | None = None, up_mode: bool = False) -> Running:
        cfg = cfg or base_config(tmp_path)
        server = TestServer(make_app(cfg, up_mode=up_mode), host="127.0.0.1")
        await server.start_server()
        r = Running(server, aiohttp.ClientSession(), cfg)
        running.append(r)
        return r

    yield start
    for r in running:
        await r.session.close()
        await r.server.close()


async def stop(r: Running) -> None:
    await r.session.close()
    await r.server.close()
