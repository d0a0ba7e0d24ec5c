"""Collector extension for application exceptions and API/SQL performance: storage, series and query API."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from checks.catalogue import MetricSpec, register_metrics
from checks.config import ConfigError, Duration, from_dict, parse_duration
from checks.model import APP_EXCEPTION, Batch, Sample
from collector.exceptions_store import Reader, Writer, migrate

log = logging.getLogger("infrawatch.collector.exceptions")

register_metrics(
    MetricSpec("app.exceptions.count", "count", "gauge",
               "application exceptions received in one agent batch (sum over a window for a rate)", ("module", "service")),
)

SORT_GROUPS = ("count", "last_seen", "first_seen", "total")
SORT_PERF = ("p95", "p99", "p50", "total", "count", "error_rate", "max")


@dataclass(frozen=True, kw_only=True)
class ExceptionsConfig:
    """The `exceptions:` section of collector.yaml (optional: the extension is always on)."""

    enabled: bool = True
    #: time-bucket size of exception counts and performance aggregates
    bucket: Duration = 60.0
    #: how long per-bucket counts, occurrences and performance aggregates are kept (groups are kept)
    retention: Duration = 30 * 86400.0
    #: newest occurrences kept per exception group
    max_occurrences: int = 200
    #: slowest samples kept per endpoint / SQL fingerprint and bucket
    slowest_samples: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.bucket <= 86400:
            raise ConfigError("bucket", "must be between 1s and 1d")
        if self.retention < self.bucket:
            raise ConfigError("retention", "must be at least one bucket")
        if self.max_occurrences < 1:
            raise ConfigError("max_occurrences", "must be at least 1")
        if not 1 <= self.slowest_samples <= 100:
            raise ConfigError("slowest_samples", "must be between 1 and 100")


class BadParam(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


def parse_window(q: Any, now: float, default: str = "1h") -> tuple[float, float]:
    """`window=15m|1h|7d` (ending now) or `start`/`end` (unix seconds or -1h relative)."""

    def t(v: str, name: str) -> float:
        v = v.strip()
        try:
            if v.startswith("-"):
                return now - parse_duration(v[1:], name)
            if v == "now":
                return now
            return float(v)
        except (ConfigError, ValueError):
            raise BadParam(name, f"expected unix seconds, 'now' or a relative time like -1h; got {v!r}") from None

    end = t(q["end"], "end") if q.get("end") else now
    if q.get("start"):
        start = t(q["start"], "start")
    else:
        try:
            start = end - parse_duration(q.get("window") or default, "window")
        except ConfigError:
            raise BadParam("window", f"expected a duration such as 15m, 1h, 7d; got {q.get('window')!r}") from None
    if start >= end:
        raise BadParam("start", "must be before end")
    return start, end


def _int(q: Any, name: str, default: int, lo: int, hi: int) -> int:
    v = q.get(name)
    if v is None or v == "":
        return default
    try:
        n = int(v)
    except ValueError:
        raise BadParam(name, f"expected an integer; got {v!r}") from None
    if not lo <= n <= hi:
        raise BadParam(name, f"must be between {lo} and {hi}")
    return n


def _choice(q: Any, name: str, allowed: tuple[str, ...]) -> str:
    v = q.get(name) or allowed[0]
    if v not in allowed:
        raise BadParam(name, f"must be one of {', '.join(allowed)}; got {v!r}")
    return v


class ExceptionsExtension:
    """Exception groups (fingerprint → one row with counts per bucket/host) and performance buckets with merged sketches."""

    name = "exceptions"
    ALWAYS_ON = True

    @classmethod
    def validate(cls, raw: Any, path: str = "exceptions") -> ExceptionsConfig:
        return from_dict(ExceptionsConfig, raw or {}, path)

    def __init__(self, config: ExceptionsConfig, ctx: Any) -> None:
        self.config = config
        self.ctx = ctx
        self.writer = Writer(config.bucket, config.slowest_samples, config.max_occurrences)
        self.reader = Reader(str(ctx.store.path)) if getattr(ctx, "store", None) is not None else None
        self._last_prune = 0.0

    # ------------------------------------------------------------ ingest

    def migrate(self, conn: Any) -> None:
        migrate(conn)

    def in_transaction(self, conn: Any, batch: Batch) -> None:
        if not self.config.enabled or not batch.events:
            return
        if not any(e.kind.startswith("app.") for e in batch.events):
            return
        self.writer.apply(conn, batch)
        now = time.time()
        if now - self._last_prune > 3600:
            self._last_prune = now
            self.writer.prune(conn, self.config.retention, now)

    async def after_commit(self, batch: Batch) -> None:
        """`app.exceptions.count` per module (and service) for alerting, Zabbix and dashboards."""
        if not self.config.enabled:
            return
        counts: dict[tuple[str, str], int] = {}
        ts = 0.0
        for e in batch.events:
            if e.kind != APP_EXCEPTION:
                continue
            c = (e.data or {}).get("count", 1)
            n = c if isinstance(c, int) and not isinstance(c, bool) and c >= 1 else 1
            key = (str(e.tags.get("module") or "unknown"), str(e.tags.get("service") or ""))
            counts[key] = counts.get(key, 0) + n
            ts = max(ts, e.ts)
        if not counts:
            return
        out = []
        for (module, service), n in counts.items():
            tags = {"module": module, "host": batch.agent}
            if service:
                tags["service"] = service
            out.append(Sample("app.exceptions.count", float(n), ts, tags))
        try:
            self.ctx.emit_samples(out)
        except Exception as e:  # noqa: BLE001
            log.warning("cannot emit app.exceptions.count", extra={"error": str(e)})

    # ------------------------------------------------------------ API

    def routes(self) -> list[Any]:
        from aiohttp import web

        return [
            web.get("/api/v1/exceptions", self.list_groups),
            web.get("/api/v1/exceptions/{id}", self.get_group),
            web.get("/api/v1/perf/endpoints", self.perf_endpoints),
            web.get("/api/v1/perf/sql", self.perf_sql),
            web.get("/api/v1/performance/endpoints", self.perf_endpoints),
            web.get("/api/v1/performance/sql", self.perf_sql),
        ]

    def _bad(self, e: BadParam) -> Any:
        from aiohttp import web

        return web.json_response({"error": e.message, "param": e.param}, status=400)

    async def list_groups(self, request: Any) -> Any:
        from aiohttp import web

        q = request.query
        try:
            start, end = parse_window(q, time.time())
            sort = _choice(q, "sort", SORT_GROUPS)
            limit = _int(q, "limit", 50, 1, 1000)
        except BadParam as e:
            return self._bad(e)
        assert self.reader is not None
        rows = await asyncio.to_thread(
            self.reader.groups, start=start, end=end, module=q.get("module") or None, host=q.get("host") or None,
            service=q.get("service") or None, sort=sort, limit=limit, bucket=self.config.bucket,
        )
        return web.json_response({"start": start, "end": end, "groups": rows})

    async def get_group(self, request: Any) -> Any:
        from aiohttp import web

        q = request.query
        try:
            gid = int(request.match_info["id"])
            if not 0 < gid < 2**62:
                return web.json_response({"error": f"no exception group {gid}"}, status=404)
        except ValueError:
            return web.json_response({"error": "exception group id must be an integer", "param": "id"}, status=400)
        try:
            start, end = parse_window(q, time.time(), "24h")
            step = parse_duration(q["step"], "step") if q.get("step") else max((end - start) / 60, self.config.bucket)
        except BadParam as e:
            return self._bad(e)
        except ConfigError:
            return self._bad(BadParam("step", f"expected a duration such as 1m, 1h; got {q.get('step')!r}"))
        assert self.reader is not None
        g = await asyncio.to_thread(self.reader.group, gid, start=start, end=end, step=step, bucket=self.config.bucket)
        if g is None:
            return web.json_response({"error": f"no exception group {gid}"}, status=404)
        g["start"], g["end"] = start, end
        return web.json_response(g)

    async def _perf(self, request: Any, kind: str) -> Any:
        from aiohttp import web

        q = request.query
        try:
            start, end = parse_window(q, time.time())
            sort = _choice(q, "sort", SORT_PERF)
            limit = _int(q, "limit", 20, 1, 1000)
            k = q.get("kind") or kind
            if kind != "sql" and k not in ("request", "span"):
                raise BadParam("kind", "must be request or span")
        except BadParam as e:
            return self._bad(e)
        assert self.reader is not None
        rows = await asyncio.to_thread(
            self.reader.perf, k if kind != "sql" else "sql", start=start, end=end, module=q.get("module") or None,
            service=q.get("service") or None, db=q.get("db") or None, sort=sort, limit=limit, bucket=self.config.bucket,
        )
        return web.json_response({"start": start, "end": end, "items": rows})

    async def perf_endpoints(self, request: Any) -> Any:
        return await self._perf(request, "request")

    async def perf_sql(self, request: Any) -> Any:
        return await self._perf(request, "sql")

    # ------------------------------------------------------------ lifecycle

    async def start(self, app: Any = None) -> None:
        pass

    async def stop(self) -> None:
        pass
