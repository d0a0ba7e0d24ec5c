"""Collector extension serving the operations web page (static HTML/JS/CSS from collector/web/, no build step)."""

from __future__ import annotations

import hashlib
import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from checks.config import ConfigError, from_dict
from checks.model import Batch

log = logging.getLogger("collector.web")

STATIC_DIR = Path(__file__).resolve().parent / "web"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}

#: the page loads nothing from elsewhere and runs no inline script: data it shows can never become code
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    """The `web:` section of collector.yaml (optional: the page is always on unless `enabled: false`)."""

    enabled: bool = True
    #: shown in the page header and the browser tab
    title: str = "infrawatch"

    def __post_init__(self) -> None:
        if not self.title.strip():
            raise ConfigError("title", "must not be empty")
        if len(self.title) > 100:
            raise ConfigError("title", "must be at most 100 characters")


@dataclass(frozen=True)
class _File:
    body: bytes
    content_type: str
    etag: str


def load_static(directory: Path, title: str) -> dict[str, _File]:
    """Every file of the page, read once; index.html gets the configured title (HTML-escaped)."""
    out: dict[str, _File] = {}
    for p in sorted(directory.iterdir()):
        ct = CONTENT_TYPES.get(p.suffix)
        if not p.is_file() or ct is None:
            continue
        body = p.read_bytes()
        if p.name == "index.html":
            body = body.replace(b"{{TITLE}}", html.escape(title, quote=True).encode())
        out[p.name] = _File(body, ct, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
    return out


class WebExtension:
    """GET / → /ui/, GET /ui/{file} → the page's static files. The page reads the JSON APIs with the user's token."""

    name = "web"
    ALWAYS_ON = True

    @classmethod
    def validate(cls, raw: Any, path: str = "web") -> WebConfig:
        return from_dict(WebConfig, raw or {}, path)

    def __init__(self, config: WebConfig, ctx: Any = None, static_dir: Path = STATIC_DIR) -> None:
        self.config = config
        self.ctx = ctx
        self.files = load_static(static_dir, config.title) if config.enabled else {}

    # ------------------------------------------------------------ extension contract (nothing to store)

    def migrate(self, conn: Any) -> None:
        pass

    def in_transaction(self, conn: Any, batch: Batch) -> None:
        pass

    async def after_commit(self, batch: Batch) -> None:
        pass

    async def start(self, app: Any = None) -> None:
        pass

    async def stop(self) -> None:
        pass

    # ------------------------------------------------------------ HTTP

    def routes(self) -> list[web.RouteDef]:
        if not self.config.enabled:
            return []
        return [
            web.get("/", self.root),
            web.get("/ui", self.root),
            web.get("/ui/{path:.*}", self.static),
        ]

    async def root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/" + (f"?{request.query_string}" if request.query_string else ""))

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["path"] or "index.html"
        f = self.files.get(name)
        if f is None:
            # deep links such as /ui/host/web1 load the page, which routes on its own
            if "." in name.rsplit("/", 1)[-1]:
                raise web.HTTPNotFound(text=f"no such file: /ui/{name}")
            f = self.files["index.html"]
        headers = {**SECURITY_HEADERS, "ETag": f.etag}
        if request.headers.get("If-None-Match") == f.etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=f.body, headers={**headers, "Content-Type": f.content_type})
