"""Read API: /healthz, /api/v1/hosts, /api/v1/series, /api/v1/query, /api/v1/events."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from aiohttp import web

from checks.config import ConfigError, parse_duration

from collector.http import json_error, json_response
from collector.reader import QueryError

_REL_RE = re.compile(r"^-\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?$")


def parse_time(v: str | None, param: str, default: float, now: float) -> float:
    """Unix seconds, `now`, or relative like `-1h` / `-30m` / `-90` (seconds before now)."""
    if v is None or v == "":
        return default
    v = v.strip()
    if v == "now":
        return now
    if v.startswith("-") and not v[1:].replace(".", "", 1).isdigit() or v.startswith("now-"):
        rel = v[3:] if v.startswith("now-") else v
        try:
            return now - parse_duration(rel.lstrip("-"), param)
        except ConfigError:
            raise QueryError(param, f"expected unix seconds or a relative time like -1h; got {v!r}") from None
    try:
        x = float(v)
    except ValueError:
        raise QueryError(param, f"expected unix seconds or a relative time like -1h; got {v!r}") from None
    if x < 0:
        return now + x
    if x > 1e11:  # milliseconds
        x /= 1000
    return x


def _tags(q: Any) -> dict[str, str]:
    out = {}
    for k, v in q.items():
        if k.startswith("tag."):
            key = k[4:]
            if not key or not re.match(r"^[a-z_][a-z0-9_]*$", key):
                raise QueryError(k, "tag key must match [a-z_][a-z0-9_]*")
            out[key] = v
    return out


def _core(request: web.Request) -> Any:
    from collector.app import CORE

    return request.app[CORE]


async def healthz(request: web.Request) -> web.Response:
    core = _core(request)
    store = core.store
    ok = store is not None and store.writer._thread is not None and store.writer._thread.is_alive()
    body = {
        "status": "ok" if ok else "starting" if store is None else "failing",
        "uptime_seconds": round(time.time() - core.started, 1),
        "pending_samples": store.writer.pending_samples if store else 0,
        "sinks": {r.name: {"queued": r.outbox.depth, "failures": r.stats.consecutive_failures} for r in core.runners},
    }
    return json_response(body, 200 if ok else 503)


async def hosts(request: web.Request) -> web.Response:
    core = _core(request)
    return json_response({"hosts": await asyncio.to_thread(core.reader.hosts)})


async def series(request: web.Request) -> web.Response:
    core = _core(request)
    q = request.query
    try:
        tags = _tags(q)
    except QueryError as e:
        return json_error(400, str(e), param=e.param)
    res = await asyncio.to_thread(core.reader.series, q.get("metric") or None, q.get("host") or None, tags)
    return json_response({"series": res})


async def query(request: web.Request) -> web.Response:
    core = _core(request)
    q = request.query
    now = time.time()
    try:
        metric = q.get("metric")
        if not metric:
            raise QueryError("metric", "is required (e.g. metric=system.cpu.usage_percent)")
        end = parse_time(q.get("end"), "end", now, now)
        start = parse_time(q.get("start"), "start", end - 3600, now)
        step = None
        if q.get("step"):
            try:
                step = parse_duration(q["step"], "step")
            except ConfigError:
                raise QueryError("step", f"expected seconds or a duration like 60s, 5m; got {q['step']!r}") from None
        tags = _tags(q)
        res = await asyncio.to_thread(
            core.reader.query_ex, metric, tags, start, end, step, q.get("agg") or None, q.get("host") or None, q.get("resolution") or None
        )
    except QueryError as e:
        return json_error(400, str(e), param=e.param)
    series_list, resolution = res
    return json_response({"series": series_list, "resolution": resolution, "start": start, "end": end, "step": step})


async def events(request: web.Request) -> web.Response:
    core = _core(request)
    q = request.query
    now = time.time()
    try:
        end = parse_time(q.get("end"), "end", now, now)
        start = parse_time(q.get("start"), "start", end - 3600, now)
        try:
            limit = int(q.get("limit", "1000"))
        except ValueError:
            raise QueryError("limit", f"expected an integer; got {q.get('limit')!r}") from None
        if not (1 <= limit <= 100_000):
            raise QueryError("limit", "must be between 1 and 100000")
    except QueryError as e:
        return json_error(400, str(e), param=e.param)
    res = await asyncio.to_thread(core.reader.events, q.get("kind") or None, start, end, q.get("host") or None, limit)
    return json_response({"events": res})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/healthz", healthz),
        web.get("/api/v1/hosts", hosts),
        web.get("/api/v1/series", series),
        web.get("/api/v1/query", query),
        web.get("/api/v1/events", events),
    ]
