"""Zabbix sink against a real Zabbix 6.0 (server + API + PostgreSQL started by the test session)."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from checks.config import from_dict
from checks.model import Batch, Event, Sample, new_batch_id
from collector.sinks.base import SinkContext, SinkError
from collector.sinks.zabbix import ZabbixSink, ZabbixSinkConfig
from collector.sinks.zabbix_keys import DISCOVERIES, split_ts
from collector.sinks.zabbix_template import TEMPLATE_FILE
from tests.servers.zabbix import ZabbixStack, wait_until

pytestmark = pytest.mark.timeout(240)

IMPORT_RULES = {
    "groups": {"createMissing": True, "updateExisting": True},
    "templates": {"createMissing": True, "updateExisting": True},
    "items": {"createMissing": True, "updateExisting": True, "deleteMissing": True},
    "triggers": {"createMissing": True, "updateExisting": True, "deleteMissing": True},
    "graphs": {"createMissing": True, "updateExisting": True, "deleteMissing": True},
    "discoveryRules": {"createMissing": True, "updateExisting": True, "deleteMissing": True},
    "templateDashboards": {"createMissing": True, "updateExisting": True, "deleteMissing": True},
    "valueMaps": {"createMissing": True, "updateExisting": True},
}


@pytest.fixture(scope="module")
def zbx(zabbix_stack: ZabbixStack) -> ZabbixStack:
    """The session's Zabbix with the shipped template imported through configuration.import."""
    api = zabbix_stack.api()
    assert api.configuration.import_(format="yaml", source=TEMPLATE_FILE.read_text(encoding="utf-8"), rules=IMPORT_RULES) is True
    return zabbix_stack


class Metrics:
    """Collects what the sink reports through SinkContext.emit_metric."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, tuple], float] = {}

    def __call__(self, name: str, value: float, tags: dict[str, str] | None = None) -> None:
        self.last[(name, tuple(sorted((tags or {}).items())))] = value

    def get(self, name: str, **tags: str) -> float:
        return self.last.get((name, tuple(sorted(tags.items()))), 0.0)


def make_sink(zbx: ZabbixStack, tmp_path: Path, metrics: Metrics | None = None, use_api: bool = True,
              api: dict[str, Any] | None = None, **over: Any) -> ZabbixSink:
    raw: dict[str, Any] = {"server": "127.0.0.1", "port": zbx.server_port, "hold": "60s", "retry_held_every": "0.3s"}
    if use_api:
        raw["api"] = {"url": zbx.api_url, "user": zbx.user, "password": zbx.password, **(api or {})}
    raw.update(over)
    cfg = from_dict(ZabbixSinkConfig, raw)
    return ZabbixSink(cfg, SinkContext(str(tmp_path), metrics or Metrics()))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def batch(host: str, samples: list[Sample], events: list[Event] | None = None) -> Batch:
    return Batch(new_batch_id(), host, time.time(), samples, events or [])


async def send_retrying(sink: ZabbixSink, batches: list[Batch], timeout: float = 30.0) -> None:
    """What the collector's sink runner does: retry a retryable failure with back-off."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await sink.send(batches)
            return
        except SinkError as e:
            assert e.retryable and time.monotonic() < deadline, e
            await asyncio.sleep(0.5)


async def drain(sink: ZabbixSink, timeout: float = 60.0) -> None:
    """Wait until the sink holds nothing back (items created, config cache synced, values delivered)."""
    deadline = time.monotonic() + timeout
    while sink.held_count:
        assert time.monotonic() < deadline, f"{sink.held_count} values still held after {timeout}s"
        await asyncio.sleep(0.2)


async def until(pred: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Like wait_until, but lets the event loop (sink flusher, sink runner) run while polling."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await asyncio.to_thread(pred)
        except Exception as e:  # noqa: BLE001 - polled call may fail until ready
            last = e
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s (last: {last!r})")
        await asyncio.sleep(0.2)


def hostid(api: Any, host: str) -> str:
    return api.host.get(filter={"host": host}, output=["hostid"])[0]["hostid"]


def history(api: Any, host: str, key: str) -> list[dict[str, str]]:
    item = api.item.get(hostids=hostid(api, host), filter={"key_": key}, output=["itemid", "value_type"])
    if not item:
        return []
    return api.history.get(history=int(item[0]["value_type"]), itemids=[item[0]["itemid"]], output="extend",
                           sortfield="clock", sortorder="ASC")


def values(api: Any, host: str, key: str, n: int) -> list[float]:
    """Poll history until `n` rows are stored (the server's history syncers write asynchronously)."""
    rows = wait_until(lambda: len(r := history(api, host, key)) >= n and r, timeout=30, what=f"{n} history rows of {key}")
    return [float(r["value"]) for r in rows]


def test_template_imports_with_rules_prototypes_and_dashboard(zbx: ZabbixStack) -> None:
    api = zbx.api()
    # importing twice is idempotent (what an operator does after upgrading infrawatch)
    assert api.configuration.import_(format="yaml", source=TEMPLATE_FILE.read_text(encoding="utf-8"), rules=IMPORT_RULES) is True
    tpl = api.template.get(filter={"host": "infrawatch"}, output=["templateid"])[0]["templateid"]
    rules = {r["key_"] for r in api.discoveryrule.get(templateids=tpl, output=["key_"])}
    assert rules == {d.rule_key for d in DISCOVERIES.values()}
    protos = {p["key_"] for p in api.itemprototype.get(templateids=tpl, output=["key_"])}
    assert "infrawatch.system.filesystem.used_percent[{#MOUNTPOINT}]" in protos
    assert "infrawatch.app.exceptions.count[{#MODULE}]" in protos
    assert "infrawatch.probe.up[{#PROBE},{#TARGET}]" in protos
    triggers = [t["expression"] for t in api.trigger.get(templateids=tpl, output=["expression"], expandExpression=True)]
    assert any("nodata(/infrawatch/infrawatch.heartbeat" in e for e in triggers)
    tprotos = [t["expression"] for t in api.triggerprototype.get(templateids=tpl, output=["expression"], expandExpression=True)]
    assert any("infrawatch.app.exceptions.count[{#MODULE}]" in e for e in tprotos)
    assert any("infrawatch.app.request.duration_p95_seconds[{#MODULE},{#ENDPOINT}]" in e for e in tprotos)
    assert any("infrawatch.alerts.firing[{#ALERTNAME},{#SUBJECT}]" in e for e in tprotos)
    assert any("infrawatch.probe.tls_cert_expiry_days" in e for e in tprotos)
    assert api.graphprototype.get(templateids=tpl, output=["name"])
    dash = api.templatedashboard.get(templateids=tpl, selectPages="extend")
    assert dash and len(dash[0]["pages"][0]["widgets"]) >= 8


async def test_host_provisioned_lld_discovered_values_in_history(zbx: ZabbixStack, tmp_path: Path) -> None:
    api = zbx.api()
    host = unique("prov")
    sink = make_sink(zbx, tmp_path, api={"host_tags": {"env": "test"}})
    await sink.start()
    try:
        base = time.time() - 60
        samples = []
        for i in range(3):
            ts = base + i * 10 + 0.123456
            samples += [
                Sample("system.filesystem.used_percent", 41.5 + i, ts, {"mountpoint": "/"}),
                Sample("system.filesystem.used_percent", 7.0 + i, ts, {"mountpoint": "/srv/a,b"}),
                Sample("system.network.rx_bytes_per_second", 1000.0 * (i + 1), ts, {"interface": "eth0"}),
                Sample("system.network.rx_bytes_per_second", 5.0, ts, {"interface": "lo"}),
                Sample("system.cpu.usage_percent", 12.25 + i, ts, {"cpu": "total"}),
                Sample("system.load.1m", 0.5, ts, {"env": "ignored-global-tag"}),
            ]
        await sink.send([batch(host, samples)])
        await drain(sink)
    finally:
        await sink.close()

    h = api.host.get(filter={"host": host}, selectParentTemplates=["host"], selectGroups=["name"], selectTags="extend",
                     selectInventory=["alias", "tag"], output=["hostid", "inventory_mode"])[0]
    assert [t["host"] for t in h["parentTemplates"]] == ["infrawatch"]
    assert [g["name"] for g in h["groups"]] == ["infrawatch"]
    assert {"tag": "env", "value": "test"} in [{"tag": t["tag"], "value": t["value"]} for t in h["tags"]]
    assert h["inventory"]["alias"] == host
    # LLD created the per-filesystem and per-interface items (flags=4: discovered)
    discovered = {i["key_"] for i in api.item.get(hostids=h["hostid"], output=["key_"], filter={"flags": 4})}
    assert {"infrawatch.system.filesystem.used_percent[/]", 'infrawatch.system.filesystem.used_percent["/srv/a,b"]',
            "infrawatch.system.network.rx_bytes_per_second[eth0]", "infrawatch.system.network.rx_bytes_per_second[lo]",
            "infrawatch.system.filesystem.total_bytes[/]"} <= discovered
    assert values(api, host, 'infrawatch.system.filesystem.used_percent["/srv/a,b"]', 3) == [7.0, 8.0, 9.0]
    rows = history(api, host, 'infrawatch.system.filesystem.used_percent["/srv/a,b"]')
    for i, r in enumerate(rows):
        ts = base + i * 10 + 0.123456
        assert int(r["clock"]) == int(ts)
        assert abs(int(r["ns"]) - (ts - int(ts)) * 1e9) < 10_000
        assert (int(r["clock"]), int(r["ns"])) == split_ts(ts)
    assert values(api, host, "infrawatch.system.network.rx_bytes_per_second[eth0]", 3) == [1000, 2000, 3000]
    assert values(api, host, "infrawatch.system.cpu.usage_percent[total]", 3) == [12.25, 13.25, 14.25]
    assert values(api, host, "infrawatch.system.load.1m", 3) == [0.5] * 3  # global tags do not change the key
    values(api, host, "infrawatch.heartbeat", 1)
    assert int(history(api, host, "infrawatch.heartbeat")[-1]["clock"]) == int(base + 20.123456)
    assert sink.failed_total == 0


async def test_zabbix_down_runner_keeps_batches_then_every_value_arrives(zbx: ZabbixStack, tmp_path: Path) -> None:
    """Zabbix server stopped mid-run: send() raises a retryable SinkError, the collector's sink runner
    keeps the batches in its disk queue and retries; after the restart every value arrives (rows counted)."""
    from collector.sinkrunner import SinkRunner

    api = zbx.api()
    host = unique("outage")
    sink = make_sink(zbx, tmp_path)
    runner = SinkRunner(sink, tmp_path / "queue.db", backoff_initial=0.2, backoff_max=1.0, name="zabbix")
    await runner.start()
    t0 = time.time() - 300

    def mk(k: int) -> Batch:
        return batch(host, [Sample("system.memory.used_percent", float(k), t0 + k, {}),
                            Sample("system.filesystem.used_percent", float(k), t0 + k, {"mountpoint": "/data"})])

    n = 0
    try:
        runner.enqueue(mk(n))
        n += 1
        assert await runner.flush(timeout=30)
        await drain(sink)
        zbx.stop_server()
        try:
            # the sink itself says "retry later" while the server is down
            with pytest.raises(SinkError) as ei:
                await sink.send([mk(1000)])
            assert ei.value.retryable
            for _ in range(5):
                runner.enqueue(mk(n))
                n += 1
            await until(lambda: runner.stats.consecutive_failures >= 2, what="runner retrying")
            assert runner.stats.depth_batches == 5  # nothing lost, nothing dropped
            assert not runner.stats.dropped_batches
        finally:
            zbx.start_server()
        assert await runner.flush(timeout=60), runner.stats
        await drain(sink)
    finally:
        await runner.stop()
    for key in ("infrawatch.system.memory.used_percent", "infrawatch.system.filesystem.used_percent[/data]"):
        assert values(api, host, key, n) == [float(k) for k in range(n)]
    assert sink.failed_total == 0


async def test_held_values_survive_a_sink_restart(zbx: ZabbixStack, tmp_path: Path) -> None:
    """Values for an item that does not exist yet are held, kept across close()/start(), then delivered."""
    api = zbx.api()
    host = unique("held")
    ts = time.time() - 20
    # a metric the template lacks: its item is created in the background, which never runs here
    sink = make_sink(zbx, tmp_path, retry_held_every="1h", heartbeat=False)
    await sink.start()
    try:
        await sink.send([batch(host, [Sample("custom.queue_depth", float(i), ts + i, {}) for i in range(3)])])
        assert sink.held_count == 3
    finally:
        await sink.close()
    assert (tmp_path / "zabbix-held.json").is_file()
    again = make_sink(zbx, tmp_path, heartbeat=False)
    await again.start()
    try:
        assert again.held_count == 3
        await drain(again)
    finally:
        await again.close()
    assert values(api, host, "infrawatch.custom.queue_depth", 3) == [0.0, 1.0, 2.0]
    assert not (tmp_path / "zabbix-held.json").exists()


async def test_alert_states_become_zabbix_problems_with_their_severity(zbx: ZabbixStack, tmp_path: Path) -> None:
    api = zbx.api()
    host = unique("alerted")
    sink = make_sink(zbx, tmp_path)
    await sink.start()
    tags = {"alertname": "ProbeDown", "severity": "critical", "host": host, "target": "https://shop.example/pay"}
    try:
        now = time.time()
        # what alerting's emit_metrics writes: alerts.firing per alert (host tag = the alert's host)
        await sink.send([batch("collector-1", [Sample("alerts.firing", 1.0, now, tags)])])
        await drain(sink)
        hid = hostid(api, host)
        trig = await until(lambda: api.trigger.get(hostids=hid, search={"description": "ProbeDown"},
                                                   output=["description", "priority"]),
                           what="alert trigger discovered")
        # the LLD overrides keep only the prototype of the alert's severity: critical → High (4)
        assert [t["priority"] for t in trig] == ["4"], trig
        assert "https://shop.example/pay" in trig[0]["description"]
        await sink.send([batch("collector-1", [Sample("alerts.firing", 1.0, time.time(), tags)])])
        await until(lambda: api.problem.get(hostids=hid, output=["name"]), what="alert problem")
        await sink.send([batch("collector-1", [Sample("alerts.firing", 0.0, time.time() + 0.1, tags)])])
        await until(lambda: not api.problem.get(hostids=hid, output=["name"]), what="alert problem resolved")
    finally:
        await sink.close()


async def test_rejected_values_named_by_host_and_key_rest_delivered(zbx: ZabbixStack, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    api = zbx.api()
    host = unique("reject")
    metrics = Metrics()
    ts = time.time() - 30
    first = make_sink(zbx, tmp_path)
    try:
        await first.send([batch(host, [Sample("system.memory.used_percent", 50.0, ts, {})])])
        await drain(first)
    finally:
        await first.close()
    # provisioning without extra items: a metric the template lacks stays an unknown key
    sink = make_sink(zbx, tmp_path, metrics, hold="2s",
                     api={"create_missing_items": False, "check_unsupported_interval": "0.5s"})
    await sink.start()
    try:
        # an operator's item of the wrong value type (unsigned) for a float metric
        api.item.create(hostid=hostid(api, host), name="wrong type", key_="infrawatch.system.memory.swap_used_bytes.x",
                        type=2, value_type=3)
        await asyncio.sleep(2.5)  # the server's config cache picks the item up
        caplog.set_level(logging.WARNING, logger="collector.sinks.zabbix")
        good = [Sample("system.memory.used_percent", 60.0 + i, ts + 1 + i, {}) for i in range(5)]
        bad = [Sample("no.such.metric", 1.0, ts + 1, {}), Sample("system.memory.swap_used_bytes.x", 1.5, ts + 1, {})]
        await sink.send([batch(host, good[:3] + bad + good[3:])])
        await drain(sink, timeout=30)
        await until(lambda: sink.failed_total >= 1, timeout=20, what="rejected value reported")
        for _ in range(40):  # the background check finds the unsupported item
            if sink.unsupported_count >= 1:
                break
            await asyncio.sleep(0.25)
    finally:
        await sink.close()
    assert sink.failed_total == 1
    assert metrics.get("collector.sink.zabbix.failed_values_total", sink="zabbix", zabbix_host=host) == 1
    rejected = [r for r in caplog.records if r.getMessage() == "zabbix rejected values"]
    assert rejected and rejected[0].host == host and "infrawatch.no.such.metric" in rejected[0].keys
    unsupported = [r for r in caplog.records if "unsupported" in r.getMessage()]
    assert unsupported and unsupported[0].key == "infrawatch.system.memory.swap_used_bytes.x"
    assert "Numeric (unsigned)" in unsupported[0].error
    assert metrics.get("collector.sink.zabbix.unsupported_items", sink="zabbix") >= 1
    assert values(api, host, "infrawatch.system.memory.used_percent", 6) == [50, 60, 61, 62, 63, 64]


async def test_payment_exception_burst_raises_problem_then_resolves(zbx: ZabbixStack, tmp_path: Path) -> None:
    api = zbx.api()
    host = unique("pay")
    # counts from events too (what a collector without the exceptions extension does)
    sink = make_sink(zbx, tmp_path, api={"host_macros": {"{$INFRAWATCH.EXC.WINDOW}": "6s"}},
                     exception_counts_from_events=True)
    await sink.start()
    try:
        # first sight of the module: provisioning + LLD (values held until the item exists)
        await sink.send([batch(host, [Sample("app.exceptions.count", 0.0, time.time(), {"module": "payment"}),
                                      Sample("app.exceptions.count", 0.0, time.time(), {"module": "order"})])])
        await drain(sink)
        hid = hostid(api, host)
        await until(lambda: api.trigger.get(hostids=hid, search={"description": "payment"}, output=["triggerid"]),
                    what="payment trigger discovered")
        # the burst: 25 payment exceptions as events (agent-side exception capture) and a count sample
        now = time.time()
        events = [Event("app.exception", now - 0.5 + i * 0.01, "card declined", {"module": "payment"}, {}) for i in range(15)]
        await sink.send([batch(host, [Sample("app.exceptions.count", 3.0, now, {"module": "order"})], events),
                         batch(host, [Sample("app.exceptions.count", 10.0, now + 0.5, {"module": "payment"})])])

        def problems() -> list[dict[str, Any]]:
            return api.problem.get(hostids=hid, output=["name", "r_eventid"], recent=False)

        probs = await until(problems, what="payment problem")
        assert len(probs) == 1 and "payment" in probs[0]["name"], probs  # order (3 < 10) stays quiet
        # after the window the count is back to 0: the problem resolves
        await asyncio.sleep(max(0.0, now + 7 - time.time()))
        await sink.send([batch(host, [Sample("app.exceptions.count", 0.0, time.time(), {"module": "payment"})])])
        await until(lambda: not problems(), what="payment problem resolved")
    finally:
        await sink.close()


@pytest.mark.parametrize("mode", ["cert", "psk"])
async def test_tls_cert_and_psk(zbx: ZabbixStack, tmp_path: Path, mode: str) -> None:
    api = zbx.api()
    host = unique(f"tls-{mode}")
    if mode == "cert":
        tls = {"connect": "cert", "ca_file": str(zbx.ca_file), "cert_file": str(zbx.client_cert), "key_file": str(zbx.client_key)}
    else:
        if sys.version_info < (3, 13):
            pytest.importorskip("sslpsk3", reason="TLS-PSK on Python < 3.13 needs sslpsk3 (the zabbix extra installs it)")
        psk = tmp_path / "zabbix.psk"
        psk.write_text(zbx.psk_hex + "\n")
        tls = {"connect": "psk", "psk_identity": zbx.psk_identity, "psk_file": str(psk)}
    sink = make_sink(zbx, tmp_path, tls=tls)
    await sink.start()
    try:
        ts = time.time() - 10
        # PSK: until the server's configuration cache knows a host with our PSK identity the TLS
        # handshake itself fails, which is a retryable error for the sink runner
        await send_retrying(sink, [batch(host, [Sample("system.memory.used_percent", 33.0, ts, {})])])
        await drain(sink)
    finally:
        await sink.close()
    h = api.host.get(filter={"host": host}, output=["tls_accept"])[0]
    assert h["tls_accept"] == ("4" if mode == "cert" else "2")  # the host accepts only this kind of connection
    assert values(api, host, "infrawatch.system.memory.used_percent", 1) == [33.0]
    # an unencrypted sender is refused for that host: the values above really went over TLS
    (tmp_path / "plain").mkdir()
    plain = make_sink(zbx, tmp_path / "plain", use_api=False, hold="0s", heartbeat=False)
    await plain.start()
    try:
        await plain.send([batch(host, [Sample("system.memory.used_percent", 34.0, ts + 1, {})])])
    finally:
        await plain.close()
    assert plain.failed_total == 1


async def test_api_down_at_first_sight_provisioning_retried_values_held(zbx: ZabbixStack, tmp_path: Path) -> None:
    """The API is unreachable when a new agent shows up: its values are held, provisioning is retried,
    and once the API answers the host is created and every held value delivered."""
    from tests.servers.net import free_port

    api = zbx.api()
    host = unique("apidown")
    port = free_port()  # nothing listens here yet
    sink = make_sink(zbx, tmp_path, api={"url": f"http://127.0.0.1:{port}/api_jsonrpc.php", "retry_interval": "1s"})
    await sink.start()
    relay: asyncio.Server | None = None

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        finally:
            w.close()

    async def forward(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", zbx.api_port)
        await asyncio.gather(pipe(r, uw), pipe(ur, w), return_exceptions=True)

    try:
        ts = time.time() - 30
        await sink.send([batch(host, [Sample("system.memory.used_percent", 10.0 + i, ts + i, {}) for i in range(3)])])
        await asyncio.sleep(1.5)  # a few failed attempts
        assert sink.held_count >= 3 and not api.host.get(filter={"host": host})
        relay = await asyncio.start_server(forward, "127.0.0.1", port)  # the API comes back
        await drain(sink)
    finally:
        await sink.close()
        if relay is not None:
            relay.close()
    assert values(api, host, "infrawatch.system.memory.used_percent", 3) == [10.0, 11.0, 12.0]
    assert sink.failed_total == 0
