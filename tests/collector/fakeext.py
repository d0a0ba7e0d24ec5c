"""A test extension exercising every hook of collector/extension.py (the contract, not a product feature)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from checks.config import ConfigError, from_dict
from checks.model import Batch


@dataclass
class ProbeConfig:
    fail_agent: str = ""


class ProbeExtension:
    name = "probe"
    instances: list["ProbeExtension"] = []

    def __init__(self, config: ProbeConfig, ctx: Any) -> None:
        self.config = config
        self.ctx = ctx
        self.committed: list[str] = []
        self.started = self.stopped = False
        ProbeExtension.instances.append(self)

    @classmethod
    def validate(cls, raw: Any, path: str) -> ProbeConfig:
        cfg = from_dict(ProbeConfig, raw, path)
        if cfg.fail_agent == "forbidden":
            raise ConfigError(f"{path}.fail_agent", "must not be 'forbidden'")
        return cfg

    def migrate(self, conn: Any) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS probe_seen(batch_id TEXT PRIMARY KEY, samples INTEGER)")

    def in_transaction(self, conn: Any, batch: Batch) -> None:
        conn.execute("INSERT INTO probe_seen VALUES (?, ?)", (batch.batch_id, len(batch.samples)))
        if batch.agent == self.config.fail_agent:
            raise RuntimeError("probe refuses this agent")

    async def after_commit(self, batch: Batch) -> None:
        self.committed.append(batch.batch_id)

    def routes(self) -> list[Any]:
        return [web.get("/api/v1/probe", self.get), web.post("/api/v1/probe", self.post)]

    async def get(self, request: web.Request) -> web.Response:
        return web.json_response({"committed": len(self.committed)})

    async def post(self, request: web.Request) -> web.Response:
        self.ctx.require_write(request)
        self.ctx.emit_metric("probe.pokes_total", 1.0, {"via": "api"})
        return web.json_response({"ok": True})

    async def start(self, app: Any) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True
