"""aiohttp app factory for the collector: routes, read-token middleware, JSON errors, lifecycle in cleanup_ctx."""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from aiohttp import web

from collector import api
from collector.auth import check_read
from collector.config import CollectorConfig
from collector.core import Core
from collector.http import json_error
from collector.ingest import post_batches

log = logging.getLogger("collector.http")

CORE: web.AppKey[Core] = web.AppKey("collector_core", Core)

#: paths that do not need a read token
_OPEN = {"/healthz", "/api/v1/batches", "/", "/ui"}
#: path prefixes that do not need a read token (the web page's static files; its API calls still need one)
_OPEN_PREFIXES = ("/ui/",)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path not in _OPEN and not request.path.startswith(_OPEN_PREFIXES):
        denied = check_read(request.app[CORE], request)
        if denied is not None:
            return denied
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.content_type == "application/json" or e.status < 400:
            raise
        return json_error(e.status, e.reason if e.text is None or e.text.startswith(f"{e.status}:") else e.text, headers={
            k: v for k, v in e.headers.items() if k.lower() in ("allow", "www-authenticate", "retry-after")})
    except Exception:  # noqa: BLE001 — a bug in one handler must not take the daemon down
        log.exception("request failed", extra={"path": request.path, "method": request.method})
        return json_error(500, "internal error (see the collector's log)")


def make_app(cfg: CollectorConfig, *, up_mode: bool = False) -> web.Application:
    """The collector's aiohttp application. Store, sinks and extensions open when the app starts."""
    core = Core(cfg, up_mode=up_mode)
    app = web.Application(middlewares=[errors_and_auth], client_max_size=cfg.max_body_bytes)
    app[CORE] = core
    app.router.add_routes([web.post("/api/v1/batches", post_batches), *api.routes()])
    for ext in core.extensions:
        app.router.add_routes(ext.routes())
    app.cleanup_ctx.append(core.lifecycle)
    return app
