"""`infrawatch top` against the real collector extension's API (aiohttp on loopback)."""

from __future__ import annotations

import argparse
import json

import pytest

from infrawatch.commands import top
from tests.apps.helpers import CollectorExt, IngestServer, http_post
from tests.servers.net import free_port


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    top.add_arguments(p)
    return p.parse_args(list(argv))


@pytest.fixture
def filled(ingest: IngestServer, collector: CollectorExt) -> CollectorExt:
    evs = [{"type": "exception", "module": "payment", "count": 7, "exception": {"type": "CardDeclined", "message": "支付失败 card 4111"}},
           {"type": "exception", "module": "order", "exception": {"type": "KeyError", "message": "'sku'"}}]
    evs += [{"type": "request", "duration": 0.01 * (i + 1), "endpoint": "POST /pay/{id}", "module": "payment"} for i in range(20)]
    evs += [{"type": "sql", "duration": 0.002, "statement": "SELECT * FROM orders WHERE id = 9", "db": "postgresql"}]
    assert http_post(ingest.url + "/v1/events", json.dumps({"service": "shop", "events": evs}).encode())[0] == 202
    collector.ingest(ingest.flush())
    return collector


def test_top_tables_zh_and_en(filled: CollectorExt, capsys: pytest.CaptureFixture[str]) -> None:
    assert top.run(_args("--url", filled.url)) == 0
    out = capsys.readouterr().out
    assert "异常分组" in out and "最慢接口" in out and "最慢 SQL" in out
    assert "CardDeclined: 支付失败 card 4111" in out and "POST /pay/{id}" in out and "select * from orders where id = ?" in out
    lines = out.splitlines()
    i = lines.index("异常分组（按次数）")
    assert lines[i + 3].split()[0] == "7" and "payment" in lines[i + 3]  # sorted by count
    assert top.run(_args("--url", filled.url, "--lang", "en", "--module", "order")) == 0
    out = capsys.readouterr().out
    assert "Exception groups (by count)" in out and "KeyError" in out and "CardDeclined" not in out and "module=order" in out
    assert top.run(_args("--url", filled.url, "--json")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["endpoints"]["items"][0]["count"] == 20


def test_top_errors(filled: CollectorExt, capsys: pytest.CaptureFixture[str]) -> None:
    assert top.run(_args("--url", f"http://127.0.0.1:{free_port()}", "--lang", "en")) == 1
    assert "cannot reach the collector" in capsys.readouterr().err
    assert top.run(_args("--url", filled.url, "--window", "forever")) == 1
    assert "HTTP 400" in capsys.readouterr().err
    assert top.run(_args("--url", filled.url, "--limit", "0")) == 2
