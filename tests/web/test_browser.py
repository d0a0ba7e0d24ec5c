"""The console in a real headless Chromium against a real collector holding real data: pages, languages, XSS safety.

Set IW_SCREENSHOTS=DIR to save screenshots of the overview, host, exceptions and performance pages there
(docs/img/ holds the ones the README shows).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.web.cdp import Tab
from tests.web.conftest import XSS_MESSAGE, Collector, open_page, text

SHOTS = Path(os.environ["IW_SCREENSHOTS"]) if os.environ.get("IW_SCREENSHOTS") else None


async def test_overview_lists_hosts_with_cpu_in_chinese(tab: Tab, web_collector: Collector) -> None:
    await open_page(tab, f"{web_collector.url}/ui/", "overview", fresh=True)
    # the three agents (the collector itself may be listed too: it stores its own samples under its host name)
    await tab.wait_for("['web-01', 'db-01', 'cache-01'].every(h => document.querySelector(`#hosts-table tr[data-host=\"${h}\"]`))")
    assert await text(tab, 'tr[data-host="web-01"] .cpu-val') == "42.5%"
    assert await text(tab, 'tr[data-host="cache-01"] .cpu-val') == "12.0%"
    assert await text(tab, 'tr[data-host="web-01"] .disk-val') != "–"
    assert "在线" in await text(tab, 'tr[data-host="web-01"]')
    assert "延迟" in await text(tab, 'tr[data-host="mq-01"]') and "离线" in await text(tab, 'tr[data-host="batch-01"]')
    assert "0.9.2" in await text(tab, 'tr[data-host="web-01"]')  # agent version from its User-Agent
    assert await tab.eval("document.documentElement.lang") == "zh-CN"
    nav = await text(tab, "#nav")
    for label in ("概览", "主机", "告警", "异常", "性能"):
        assert label in nav
    assert "主机概览" in await text(tab, "main h2")
    heads = await tab.eval("[...document.querySelectorAll('#hosts-table th')].map(e => e.textContent)")
    assert heads[:4] == ["主机", "状态", "最后上报", "CPU"]
    assert await tab.eval("document.querySelectorAll('#hosts-table svg.spark path').length") >= 3
    if SHOTS:
        await tab.screenshot(SHOTS / "overview.png")


async def test_english_by_toggle_and_by_query(tab: Tab, web_collector: Collector) -> None:
    await open_page(tab, f"{web_collector.url}/ui/", "overview", fresh=True)
    await tab.eval("document.getElementById('btn-lang').click(), true")
    await tab.wait_for("document.querySelector('main h2') && document.querySelector('main h2').textContent === 'Hosts overview'")
    assert "Overview" in await text(tab, "#nav") and "Exceptions" in await text(tab, "#nav")
    await tab.wait_for("document.querySelectorAll('#hosts-table th')[0].textContent === 'Host'")
    assert await tab.eval("document.documentElement.lang") == "en"
    # the choice is kept across a reload
    await open_page(tab, f"{web_collector.url}/ui/#/exceptions", "exceptions")
    assert await text(tab, "main h2") == "Application exceptions"
    # and back to Chinese
    await tab.eval("document.getElementById('btn-lang').click(), true")
    await tab.wait_for("document.querySelector('main h2').textContent === '应用异常'")
    # ?lang=en wins over what is stored, and / keeps the parameter through its redirect
    await open_page(tab, f"{web_collector.url}/?lang=en", "overview")
    assert await text(tab, "main h2") == "Hosts overview"
    assert await tab.eval("localStorage.getItem('iw.lang')") == "en"


async def test_exception_markup_is_shown_as_text_never_run(tab: Tab, web_collector: Collector) -> None:
    await open_page(tab, f"{web_collector.url}/ui/#/exceptions", "exceptions", fresh=True)
    await tab.wait_for("document.querySelectorAll('#ex-table tr.ex-row').length === 3")
    msgs = await tab.eval("[...document.querySelectorAll('#ex-table .ex-msg')].map(e => e.textContent)")
    assert XSS_MESSAGE in msgs
    # sorted by count in the window: 37, 12, 4
    counts = await tab.eval("[...document.querySelectorAll('#ex-table tr.ex-row td.strong')].map(e => e.textContent)")
    assert counts == ["37", "12", "4"]
    assert await tab.eval("document.querySelectorAll('main script, main img, main b').length") == 0
    assert await tab.eval("typeof window.__xss") == "undefined"
    if SHOTS:
        await tab.screenshot(SHOTS / "exceptions.png")
    # the module filter narrows the list
    await open_page(tab, f"{web_collector.url}/ui/#/exceptions?window=24h&module=session", "exceptions")
    await tab.wait_for("document.querySelectorAll('#ex-table tr.ex-row').length === 1")
    assert "TimeoutError" in await text(tab, "#ex-table")
    # the detail page: message, stack and trend, all as text
    await open_page(tab, f"{web_collector.url}/ui/#/exceptions", "exceptions")
    await tab.wait_for("document.querySelectorAll('#ex-table tr.ex-row').length === 3")
    await tab.eval("document.querySelector('#ex-table tr.ex-row').click(), true")
    await tab.wait_for("!!document.getElementById('ex-message')")
    assert await text(tab, "#ex-message") == XSS_MESSAGE
    stack = await text(tab, "#ex-stack")
    assert "<script>alert('x')</script>" in stack and 'File "/srv/shop/users/repo.py", line 41' in stack
    assert await tab.eval("document.querySelectorAll('main svg rect.bar').length") >= 1
    assert await tab.eval("document.querySelectorAll('main script, main img').length") == 0
    assert await tab.eval("typeof window.__xss") == "undefined"
    if SHOTS:
        await tab.screenshot(SHOTS / "exception-detail.png", full=True)


async def test_performance_endpoints_and_sql(tab: Tab, web_collector: Collector) -> None:
    await open_page(tab, f"{web_collector.url}/ui/#/performance", "performance", fresh=True)
    await tab.wait_for("document.querySelectorAll('#pf-table tr.pf-row').length === 2")
    names = await tab.eval("[...document.querySelectorAll('#pf-table .pf-name')].map(e => e.textContent)")
    assert names == ["POST /api/orders", "GET /api/products/{id}"]  # slowest p95 first
    row = await text(tab, "#pf-table tr.pf-row")
    assert "400" in row and "2.50%" in row  # 400 calls, 10 errors
    await open_page(tab, f"{web_collector.url}/ui/#/performance?tab=sql&sort=max&open=1", "performance")
    await tab.wait_for("document.querySelectorAll('#pf-table tr.pf-row').length === 2")
    first = await text(tab, "#pf-table .pf-name")
    assert first.lower().startswith("update stock set qty") and "'A-1'" not in first  # literals redacted
    assert "1.80 s" in await text(tab, "#pf-table tr.detail")
    if SHOTS:
        await tab.screenshot(SHOTS / "performance.png")


async def test_host_detail_charts(tab: Tab, web_collector: Collector) -> None:
    await open_page(tab, f"{web_collector.url}/ui/#/host/db-01", "host", fresh=True)
    assert await text(tab, "#host-name") == "db-01"
    assert await tab.eval("document.querySelectorAll('.charts .card').length") == 6
    assert await tab.eval("document.querySelectorAll('.charts svg.chart-svg').length") == 6
    legend = await text(tab, ".charts")
    assert "eth0" in legend and "/data" in legend and "sda" in legend and " lo " not in legend
    assert await tab.eval("document.getElementById('host-pick').value") == "db-01"
    if SHOTS:
        await tab.screenshot(SHOTS / "host.png", full=True)
    await open_page(tab, f"{web_collector.url}/ui/#/host/db-01?range=24h", "host")
    assert await tab.eval("document.querySelector('.seg button.on').textContent") == "24h"


async def test_missing_api_shows_not_enabled(tab: Tab, web_collector: Collector) -> None:
    # this collector runs without an `alerting:` section, so /api/v1/alerts answers 404
    await open_page(tab, f"{web_collector.url}/ui/#/alerts", "alerts", fresh=True)
    assert "未启用" in await text(tab, ".not-enabled")


async def test_overview_puts_problem_hosts_first_and_filters(tab: Tab, web_collector: Collector) -> None:
    await open_page(tab, f"{web_collector.url}/ui/", "overview", fresh=True)
    order = await tab.eval("[...document.querySelectorAll('#hosts-table tr.host-row')].map(r => r.dataset.host)")
    assert order[:2] == ["batch-01", "mq-01"] and order.index("cache-01") < order.index("web-01")
    await tab.eval("const f = document.getElementById('host-filter'); f.value = 'WEB-0'; f.dispatchEvent(new Event('input')); true")
    shown = await tab.eval("[...document.querySelectorAll('#hosts-table tr.host-row')].filter(r => !r.hidden).map(r => r.dataset.host)")
    assert shown == ["web-01", "web-02", "web-03"]
    # a host name links to its detail page
    await tab.eval("document.querySelector('tr[data-host=\"web-02\"] a.host-link').click(), true")
    await tab.wait_for("document.body.dataset.ready === 'host' && (document.getElementById('host-name') || {}).textContent === 'web-02'")
