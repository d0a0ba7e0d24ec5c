"""Bearer-token checks: agent tokens for ingest, read tokens for the query API, admin tokens for writes."""

from __future__ import annotations

import hmac
import ipaddress
from typing import TYPE_CHECKING, Any, Callable, Iterable

from aiohttp import web

from collector.http import json_error

if TYPE_CHECKING:
    from collector.core import Core


def bearer(request: web.Request) -> str | None:
    h = request.headers.get("Authorization", "")
    scheme, _, tok = h.partition(" ")
    if scheme.lower() != "bearer" or not tok.strip():
        return None
    return tok.strip()


def token_in(tok: str, allowed: Iterable[str]) -> bool:
    ok = False
    for a in allowed:
        ok |= hmac.compare_digest(tok.encode(), a.encode())
    return ok


def is_loopback(request: web.Request) -> bool:
    peer = request.remote or ""
    try:
        return ipaddress.ip_address(peer.split("%")[0]).is_loopback
    except ValueError:
        return peer.startswith("/") or peer == ""  # unix socket / test transport


def check_read(core: "Core", request: web.Request) -> web.Response | None:
    """None when the request may read; otherwise the 401/403 answer."""
    cfg = core.cfg
    tok = bearer(request)
    allowed = [*cfg.read_tokens, *cfg.admin_tokens]
    if tok is not None and token_in(tok, allowed):
        return None
    if (core.up_mode or not allowed) and is_loopback(request):
        return None
    if tok is None:
        return json_error(401, "a read token is required (Authorization: Bearer <token>)", headers={"WWW-Authenticate": "Bearer"})
    return json_error(403, "this token may not read")


def require_write_factory(core: "Core") -> Callable[[Any], None]:
    def require_write(request: Any) -> None:
        tok = bearer(request)
        if tok is not None and token_in(tok, core.cfg.admin_tokens):
            return
        if core.up_mode and is_loopback(request):
            return
        if tok is None:
            raise web.HTTPUnauthorized(
                text='{"error": "an admin token is required (Authorization: Bearer <token>)"}', content_type="application/json",
                headers={"WWW-Authenticate": "Bearer"},
            )
        raise web.HTTPForbidden(text='{"error": "this token may not change anything (admin_tokens)"}', content_type="application/json")

    return require_write


def agent_names_for(core: "Core", tok: str) -> set[str] | None:
    for t, names in core.tokens.items():
        if hmac.compare_digest(tok.encode(), t.encode()):
            return names
    return None
