"""HTTP routes of alerting: alerts and acknowledgements, silences, the delivery log, receiver tests, rules."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from checks.config import ConfigError, parse_duration

if TYPE_CHECKING:
    from alerting.service import AlertingExtension

STATES = ("pending", "firing", "resolved")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS, default=str), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise web.HTTPBadRequest(body=orjson.dumps({"error": f"malformed JSON: {e}"}), content_type="application/json") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(body=orjson.dumps({"error": "the body must be a JSON object"}), content_type="application/json")
    return data


def _float(q: Any, key: str) -> float | None:
    v = q.get(key)
    if v in (None, ""):
        return None
    try:
        return float(v)
    except ValueError:
        raise web.HTTPBadRequest(body=orjson.dumps({"error": f"{key} must be a number (unix seconds)"}), content_type="application/json") from None


def build_routes(ext: "AlertingExtension") -> web.RouteTableDef:
    routes = web.RouteTableDef()

    def require_write(request: web.Request) -> None:
        """Mutating endpoints need a write token (the collector's check; absent in a bare test app)."""
        check = getattr(ext.ctx, "require_write", None)
        if check is not None:
            check(request)

    @routes.get("/api/v1/alerts")
    async def list_alerts(request: web.Request) -> web.Response:
        q = request.query
        now = ext.clock()
        states = [s for s in q.get("state", "").split(",") if s]
        for s in states:
            if s not in STATES:
                return _error(400, f"state must be one of {', '.join(STATES)}; got {s!r}")
        out = []
        for a in ext.engine.snapshot:
            if states and a.state not in states:
                continue
            if q.get("severity") and a.severity != q["severity"]:
                continue
            if q.get("rule") and a.rule != q["rule"]:
                continue
            if q.get("host") and a.labels.get("host") != q["host"]:
                continue
            if q.get("module") and a.labels.get("module") != q["module"]:
                continue
            out.append(ext.alert_json(a, now))
        order = {"firing": 0, "pending": 1, "resolved": 2}
        out.sort(key=lambda d: (order.get(d["state"], 3), {"critical": 0, "warning": 1}.get(d["severity"], 2), -(d["firing_since"] or d["active_since"])))
        return _json({"alerts": out, "count": len(out)})

    @routes.get("/api/v1/alerts/{id}")
    async def get_alert(request: web.Request) -> web.Response:
        a = ext.find_alert(request.match_info["id"])
        if a is None:
            return _error(404, f"no alert with id {request.match_info['id']!r} (give the id or an unambiguous prefix of at least 4 characters)")
        return _json({"alert": ext.alert_json(a, ext.clock())})

    @routes.post("/api/v1/alerts/{id}/ack")
    async def ack_alert(request: web.Request) -> web.Response:
        require_write(request)
        body = await _body(request)
        a = ext.find_alert(request.match_info["id"])
        if a is None:
            return _error(404, f"no alert with id {request.match_info['id']!r}")
        if a.state != "firing" or a.firing_since is None:
            return _error(409, f"alert {a.fingerprint} is {a.state}, only a firing alert can be acknowledged")
        by = body.get("by")
        if not isinstance(by, str) or not by.strip():
            return _error(400, "by: who acknowledges is required (a name)")
        comment = body.get("comment", "")
        if not isinstance(comment, str):
            return _error(400, "comment must be a string")
        ack = await ext.dbw.call(ext.acks.ack, a.fingerprint, a.firing_since, by.strip(), comment)
        return _json({"alert": a.fingerprint, "ack": ack.to_json()})

    @routes.get("/api/v1/silences")
    async def list_silences(request: web.Request) -> web.Response:
        now = ext.clock()
        status = request.query.get("status")
        items = [s.to_json(now) for s in ext.silences.list()]
        if status:
            items = [s for s in items if s["status"] == status]
        return _json({"silences": items})

    @routes.post("/api/v1/silences")
    async def add_silence(request: web.Request) -> web.Response:
        require_write(request)
        body = await _body(request)
        unknown = set(body) - {"matchers", "duration", "ends_at", "starts_at", "created_by", "comment"}
        if unknown:
            return _error(400, f"unknown field {sorted(unknown)[0]!r}")
        duration = body.get("duration")
        try:
            dur = parse_duration(duration, "duration") if duration is not None else None
        except ConfigError as e:
            return _error(400, str(e))
        created_by = body.get("created_by", "")
        comment = body.get("comment", "")
        if not isinstance(created_by, str) or not isinstance(comment, str):
            return _error(400, "created_by and comment must be strings")
        for k in ("ends_at", "starts_at"):
            if body.get(k) is not None and not isinstance(body[k], (int, float)):
                return _error(400, f"{k} must be a number (unix seconds)")
        try:
            s = await ext.dbw.call(
                ext.silences.add, body.get("matchers"), ends_at=body.get("ends_at"), duration=dur, starts_at=body.get("starts_at"),
                created_by=created_by, comment=comment,
            )
        except ValueError as e:
            return _error(400, str(e))
        ext.dispatcher._wake.set()
        return _json({"silence": s.to_json(ext.clock())}, 201)

    @routes.delete("/api/v1/silences/{id}")
    async def expire_silence(request: web.Request) -> web.Response:
        require_write(request)
        s = await ext.dbw.call(ext.silences.expire, request.match_info["id"])
        if s is None:
            return _error(404, f"no silence with id {request.match_info['id']!r}")
        ext.dispatcher._wake.set()
        return _json({"silence": s.to_json(ext.clock())})

    @routes.get("/api/v1/notifications")
    async def notifications(request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            return _error(400, "limit must be an integer")
        items = await ext.dbw.call(
            ext.deliveries.query, limit=limit, receiver=q.get("receiver") or None, outcome=q.get("outcome") or None,
            since=_float(q, "since"), alert=q.get("alert") or None,
        )
        return _json({"notifications": items, "count": len(items)})

    @routes.post("/api/v1/receivers/{name}/test")
    async def test_receiver(request: web.Request) -> web.Response:
        require_write(request)
        name = request.match_info["name"]
        try:
            results = await ext.dispatcher.test_receiver(name)
        except KeyError:
            return _error(404, f"no receiver named {name!r}; known: {', '.join(sorted(ext.integrations)) or 'none'}")
        return _json({"receiver": name, "results": results, "ok": all(r["ok"] for r in results)})

    @routes.get("/api/v1/rules")
    async def rules(request: web.Request) -> web.Response:
        out = []
        for r in ext.engine.rules:
            out.append({"name": r.name, "type": r.TYPE, "source": r.source, "description": r.cfg.description, "for": r.cfg.for_,
                        "labels": r.cfg.labels})
        return _json({"rules": out, "count": len(out)})

    @routes.post("/api/v1/rules/reload")
    async def reload(request: web.Request) -> web.Response:
        require_write(request)
        ok, msg = await asyncio.get_running_loop().run_in_executor(None, ext.reload)
        return _json({"ok": ok, "message": msg}, 200 if ok else 400)

    return routes
