"""The web extension over real HTTP: static files, content types, security headers, auth, config validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from checks.config import ConfigError
from collector.app import make_app
from collector.config import collector_config_from_dict
from collector.web import STATIC_DIR, WebExtension

READ = "web-read-token-1"


def cfg(tmp: Path, **extra: Any) -> Any:
    return collector_config_from_dict({
        "listen": "127.0.0.1:0", "data_dir": str(tmp / "data"), "read_tokens": [READ], "self_metrics_interval": 0,
        "agents": [{"name": "web1", "token": "agent-token-web"}], **extra,
    })


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Any]:
    servers: list[tuple[TestServer, aiohttp.ClientSession]] = []

    async def start(**extra: Any) -> tuple[str, aiohttp.ClientSession]:
        srv = TestServer(make_app(cfg(tmp_path, **extra)), host="127.0.0.1")
        await srv.start_server()
        s = aiohttp.ClientSession()
        servers.append((srv, s))
        return str(srv.make_url("")), s

    yield start
    for srv, s in servers:
        await s.close()
        await srv.close()


AUTH = {"Authorization": f"Bearer {READ}"}


async def test_static_files_types_and_headers(serve: Any) -> None:
    url, s = await serve()
    expect = {"": "text/html", "index.html": "text/html", "app.js": "text/javascript", "i18n.js": "text/javascript", "app.css": "text/css"}
    for name, ctype in expect.items():
        async with s.get(f"{url}/ui/{name}", headers=AUTH) as r:
            assert r.status == 200, name
            assert r.content_type == ctype and r.charset == "utf-8"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            assert "default-src 'none'" in r.headers["Content-Security-Policy"]
            body = await r.read()
            if name not in ("", "index.html"):
                assert body == (STATIC_DIR / name).read_bytes()
    async with s.get(f"{url}/ui/", headers=AUTH) as r:
        page = await r.text()
        etag = r.headers["ETag"]
    assert "<title>infrawatch</title>" in page and "{{TITLE}}" not in page
    assert 'src="app.js"' in page and "<script>" not in page  # no inline script: the CSP forbids it
    async with s.get(f"{url}/ui/", headers={**AUTH, "If-None-Match": etag}) as r:
        assert r.status == 304
    async with s.get(f"{url}/", headers=AUTH, allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "/ui/"
    async with s.get(f"{url}/?lang=en", headers=AUTH, allow_redirects=False) as r:
        assert r.headers["Location"] == "/ui/?lang=en"


async def test_no_path_escapes_the_static_dir(serve: Any) -> None:
    url, s = await serve()
    for path in ("/ui/../web.py", "/ui/%2e%2e/web.py", "/ui/..%2fweb.py", "/ui/missing.js", "/ui/app.js.bak", "/ui/.hidden.js"):
        async with s.get(f"{url}{path}", headers=AUTH) as r:
            assert r.status == 404, path
            assert "WebExtension" not in await r.text()


async def test_static_page_needs_no_token_but_the_api_does(serve: Any) -> None:
    url, s = await serve()
    async with s.get(f"{url}/api/v1/hosts") as r:
        assert r.status == 401  # the data stays protected
    for path in ("/ui/", "/ui/app.js", "/ui/app.css", "/ui/i18n.js", "/ui/index.html"):
        async with s.get(f"{url}{path}") as r:
            assert r.status == 200, path
    async with s.get(f"{url}/", allow_redirects=False) as r:
        assert r.status == 302
    async with s.get(f"{url}/ui", allow_redirects=False) as r:
        assert r.status == 302
    async with s.get(f"{url}/api/v1/exceptions") as r:
        assert r.status == 401
    async with s.get(f"{url}/api/v1/exceptions", headers={"Authorization": "Bearer wrong-token"}) as r:
        assert r.status == 403


async def test_title_is_escaped_and_page_can_be_disabled(serve: Any) -> None:
    url, s = await serve(web={"title": '<b>运维</b> "console"'})
    async with s.get(f"{url}/ui/", headers=AUTH) as r:
        page = await r.text()
    assert "<title>&lt;b&gt;运维&lt;/b&gt; &quot;console&quot;</title>" in page
    url, s = await serve(web={"enabled": False})
    async with s.get(f"{url}/ui/", headers=AUTH) as r:
        assert r.status == 404


def test_config_validation_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        cfg(tmp_path, web={"bogus": 1})
    assert "web.bogus" in str(e.value)
    with pytest.raises(ConfigError) as e:
        cfg(tmp_path, web={"title": "  "})
    assert "web.title" in str(e.value)
    with pytest.raises(ConfigError) as e:
        cfg(tmp_path, web={"enabled": "yes please"})
    assert "web.enabled" in str(e.value)
    c = cfg(tmp_path)
    assert c.extensions["web"][0] is WebExtension  # always on without a `web:` section


def test_every_ui_text_exists_in_both_languages() -> None:
    import re

    src = (STATIC_DIR / "i18n.js").read_text()
    zh_part, en_part = src[src.index("zh: {"): src.index("en: {")], src[src.index("en: {"):]
    key_re = re.compile(r'"([a-z_]+\.[a-z_]+)":')
    zh, en = set(key_re.findall(zh_part)), set(key_re.findall(en_part))
    assert zh == en, (zh ^ en)
    used = set()
    for name in ("app.js", "index.html"):
        text = (STATIC_DIR / name).read_text()
        used |= set(re.findall(r't\("([a-z_]+\.[a-z_]+)"\)', text)) | set(re.findall(r'data-i18n="([^"]+)"', text))
    # keys built at run time: status.<host status>, al.<alert state>, sev.<severity>, sil.<silence status>
    used |= {f"status.{s}" for s in ("up", "stale", "down")} | {f"al.{s}" for s in ("firing", "pending", "resolved")}
    used |= {f"sev.{s}" for s in ("critical", "warning")} | {f"sil.{s}" for s in ("active", "pending", "expired")}
    assert used - zh == set()


def test_page_never_writes_markup_from_data() -> None:
    """The page builds DOM with textContent only: no innerHTML/outerHTML/insertAdjacentHTML/document.write/eval."""
    for name in ("app.js", "i18n.js"):
        code = (STATIC_DIR / name).read_text()
        for bad in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert bad not in code, f"{name} uses {bad}"
