"""The alerts page against a collector with real alerting (ack, silence, expire), and the page's read-token flow."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import aiohttp

from tests.web.cdp import Tab
from tests.web.conftest import READ_TOKEN, Collector, open_page, text

SHOTS = Path(os.environ["IW_SCREENSHOTS"]) if os.environ.get("IW_SCREENSHOTS") else None


async def wait_alerts(url: str, want: dict[str, int]) -> list[dict]:
    """Until the engine has evaluated the seeded data (it runs every second)."""
    async with aiohttp.ClientSession() as s:
        async with asyncio.timeout(30):
            while True:
                async with s.get(f"{url}/api/v1/alerts") as r:
                    alerts = (await r.json())["alerts"]
                got = {st: sum(1 for a in alerts if a["state"] == st) for st in want}
                if got == want:
                    return alerts
                await asyncio.sleep(0.2)


async def test_alerts_ack_and_silence(tab: Tab, alerting_collector: Collector) -> None:
    url = alerting_collector.url
    await wait_alerts(url, {"firing": 1, "pending": 2})
    await open_page(tab, f"{url}/ui/#/alerts", "alerts", fresh=True)
    await tab.wait_for("document.querySelectorAll('#alerts-table tr.alert-row').length === 3")
    firing = await text(tab, "#alerts-table tr.st-firing")
    assert "cpu_busy" in firing and "host=db-01" in firing and "告警中" in firing and "警告" in firing
    # the summary template's markup arrives as text
    assert "<b>busy</b>" in firing and await tab.eval("document.querySelectorAll('main b b, td .msg b').length") == 0
    assert await tab.eval("document.querySelectorAll('#alerts-table tr.st-pending').length") == 2
    # acknowledge: a name is needed first
    await tab.eval("document.querySelector('#alerts-table tr.st-firing button').click(), true")
    assert await tab.eval("document.activeElement.id") == "ack-user"
    await tab.eval("const u = document.getElementById('ack-user'); u.value = '张三'; u.dispatchEvent(new Event('change')); true")
    await tab.eval("document.querySelector('#alerts-table tr.st-firing button').click(), true")
    await tab.wait_for("(document.querySelector('#alerts-table tr.st-firing .acked') || {}).textContent === '✓ 已确认 · 张三'")
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/api/v1/alerts", params={"state": "firing"}) as r:
            (a,) = (await r.json())["alerts"]
    assert a["ack"]["by"] == "张三"
    # silence from the row: the form gets the alert's labels, creating it lists it as active
    await tab.eval("[...document.querySelectorAll('#alerts-table tr.st-firing button')].find(b => b.textContent === '静默').click(), true")
    matchers = await tab.eval("document.querySelector('.silence-form input').value")
    assert 'host="db-01"' in matchers
    await tab.eval("[...document.querySelectorAll('.silence-form button')].find(b => b.textContent === '创建').click(), true")
    await tab.wait_for("document.querySelectorAll('tr.sil-active').length === 1")
    assert 'host="db-01"' in await text(tab, "tr.sil-active") or "host=db-01" in await text(tab, "tr.sil-active")
    await tab.wait_for("!!document.querySelector('#alerts-table tr.st-firing .muted-b')")  # shown as silenced
    # the failed webhook delivery is listed with its error
    await open_page(tab, f"{url}/ui/#/alerts", "alerts")
    await tab.wait_for("document.querySelectorAll('#notes-table tbody tr').length >= 1", timeout=20)
    note = await text(tab, "#notes-table tbody tr")
    assert "ops" in note and "webhook" in note and "cpu_busy@db-01" in note
    if SHOTS:
        await tab.screenshot(SHOTS / "alerts.png")
    await tab.eval("document.querySelector('tr.sil-active button').click(), true")
    await tab.wait_for("document.querySelectorAll('tr.sil-expired').length === 1")
    # state filter
    await open_page(tab, f"{url}/ui/#/alerts?state=pending", "alerts")
    assert await tab.eval("document.querySelectorAll('#alerts-table tr.alert-row').length") == 2


async def test_page_asks_for_a_token_and_sends_it(tab: Tab, token_collector: Collector) -> None:
    url = token_collector.url
    await open_page(tab, f"{url}/ui/", "overview", fresh=True)
    await tab.wait_for("!document.getElementById('banner').hidden")
    assert "需要访问令牌" in await text(tab, "#banner")
    # the user pastes the token into the dialog
    await tab.eval("document.getElementById('btn-token').click(), true")
    await tab.eval(f"document.getElementById('token-input').value = {json.dumps(READ_TOKEN)}, true")
    await tab.eval("document.getElementById('token-save').click(), true")
    await tab.wait_for("!!document.querySelector('#hosts-table tr[data-host=\"web-01\"]')")
    assert await text(tab, 'tr[data-host="web-01"] .cpu-val') == "42.5%"
    assert await tab.eval("document.getElementById('banner').hidden")
    assert await tab.eval("localStorage.getItem('iw.token')") == READ_TOKEN
    # kept across reloads
    await open_page(tab, f"{url}/ui/#/exceptions", "exceptions")
    await tab.wait_for("document.querySelectorAll('#ex-table tr.ex-row').length === 3")
    # a wrong token is refused and the page says so
    await tab.eval("localStorage.setItem('iw.token', 'wrong-token-xyz'), true")
    await open_page(tab, f"{url}/ui/", "overview")
    await tab.wait_for("!document.getElementById('banner').hidden")
    assert "无权" in await text(tab, "#banner")
