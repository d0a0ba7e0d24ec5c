"""`infrawatch alerts|ack|silence|notify` against the alerting API served on loopback (token from the environment)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
from pathlib import Path

import pytest

from tests.alerting.conftest import Receiver
from tests.alerting.harness import READ_TOKEN, WRITE_TOKEN, running, section, webhook
from tests.alerting.test_service import GAUGE


def parse(cmd: str, argv: list[str]) -> argparse.Namespace:
    mod = importlib.import_module(f"infrawatch.commands.{cmd}")
    p = argparse.ArgumentParser(prog=f"infrawatch {cmd}")
    mod.add_arguments(p)
    ns = p.parse_args(argv)
    ns._run = mod.run
    return ns


async def cli(cmd: str, *argv: str) -> int:
    ns = parse(cmd, list(argv))
    return await asyncio.to_thread(ns._run, ns)


async def test_cli_end_to_end(tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path, section([webhook("ops", receiver.url)], [GAUGE])) as h:
        monkeypatch.setenv("INFRAWATCH_URL", h.url)
        monkeypatch.setenv("INFRAWATCH_TOKEN", WRITE_TOKEN)
        await h.send("web1", [("app.queue.depth", 50, {})])
        a = await h.wait_alert(lambda a: a["state"] == "firing")
        capsys.readouterr()
        assert await cli("alerts") == 0
        out = capsys.readouterr().out
        assert "ID" in out.splitlines()[0] and a["id"] in out and "queue_high" in out and "host=web1" in out
        assert await cli("ack", a["id"][:6], "--by", "dave", "-m", "looking") == 0
        assert "acknowledged by dave" in capsys.readouterr().out
        assert await cli("alerts", "--host", "web1") == 0
        assert "acked by dave" in capsys.readouterr().out
        assert await cli("silence", "add", 'host="web2"', "module=~pay.*", "--duration", "30m", "-m", "reboot") == 0
        out = capsys.readouterr().out
        sid = out.split()[1]
        assert 'host="web2", module=~"pay.*"' in out
        assert await cli("silence", "list") == 0
        assert sid in capsys.readouterr().out
        assert await cli("silence", "expire", sid) == 0
        assert await cli("silence", "list") == 0
        assert capsys.readouterr().out.strip().endswith("no silences")
        assert await cli("notify", "test", "ops") == 0
        assert "ops/webhook: sent" in capsys.readouterr().out
        assert await cli("notify", "log", "--receiver", "ops") == 0
        assert "ops/webhook" in capsys.readouterr().out
        # errors: a read token cannot change anything; unknown ids and receivers are named
        assert await cli("ack", a["id"], "--token", READ_TOKEN) == 1
        assert "HTTP 403" in capsys.readouterr().err
        assert await cli("notify", "test", "nobody") == 1
        assert "no receiver named 'nobody'" in capsys.readouterr().err
        assert await cli("silence", "add", "bogus") == 1
        assert "bad matcher" in capsys.readouterr().err
    assert await cli("alerts", "--url", "http://127.0.0.1:9") == 2
    assert "cannot reach the collector" in capsys.readouterr().err
