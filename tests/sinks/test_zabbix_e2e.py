"""A real agent and collector (subprocesses) with the Zabbix sink, against the session's real Zabbix 6.0."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from collector.sinks.zabbix_template import TEMPLATE_FILE
from tests.e2e.procs import Stack
from tests.servers.zabbix import ZabbixStack

pytestmark = pytest.mark.timeout(240)

SYSTEM = [{"type": t} for t in ("cpu", "memory", "disk", "network", "system")]


def test_agent_and_collector_provision_discover_and_deliver(zabbix_stack: ZabbixStack, tmp_path: Path) -> None:
    api = zabbix_stack.api()
    prefix = f"e2e-{uuid.uuid4().hex[:6]}-"
    # the collector imports the template itself when it is missing (api.template_file)
    sink = (
        "sinks:\n"
        "  - type: zabbix\n"
        f"    server: 127.0.0.1\n    port: {zabbix_stack.server_port}\n"
        f"    host_prefix: {prefix}\n"
        "    retry_held_every: 500ms\n"
        "    backoff_initial: 200ms\n    backoff_max: 1s\n"
        "    api:\n"
        f"      url: {zabbix_stack.api_url}\n      user: {zabbix_stack.user}\n      password: {zabbix_stack.password}\n"
        f"      template_file: {TEMPLATE_FILE}\n"
    )
    stack = Stack(tmp_path, SYSTEM, interval=1.0, collector_extra=sink)
    host = prefix + stack.host
    started = time.time()
    try:
        stack.start_collector()
        stack.agent.start()

        def host_row() -> list[dict[str, Any]]:
            return api.host.get(filter={"host": host}, output=["hostid"], selectParentTemplates=["host"])

        (h,) = stack.wait_for(host_row, timeout=60, what=f"Zabbix host {host} created")
        assert [t["host"] for t in h["parentTemplates"]] == ["infrawatch"]

        def discovered() -> set[str]:
            keys = {i["key_"] for i in api.item.get(hostids=h["hostid"], output=["key_"], filter={"flags": 4})}
            fs = any(k.startswith("infrawatch.system.filesystem.used_percent[") for k in keys)
            nic = any(k.startswith("infrawatch.system.network.rx_bytes_per_second[") for k in keys)
            return keys if fs and nic and "infrawatch.system.filesystem.used_percent[/]" in keys else set()

        keys = stack.wait_for(discovered, timeout=90, what="LLD items for filesystems and interfaces")
        assert any(k.startswith("infrawatch.system.cpu.usage_percent[") for k in keys)  # per-core rule

        def rows(key: str) -> list[dict[str, str]]:
            (item,) = api.item.get(hostids=h["hostid"], filter={"key_": key}, output=["itemid"])
            return api.history.get(history=0, itemids=[item["itemid"]], output="extend", sortfield="clock", sortorder="ASC")

        for key in ("infrawatch.system.filesystem.used_percent[/]", "infrawatch.system.memory.used_percent",
                    "infrawatch.system.cpu.usage_percent[total]", "infrawatch.heartbeat"):
            got = stack.wait_for(lambda k=key: rows(k), timeout=60, what=f"history of {key}")
            for r in got:  # the agent's timestamps, not the time of arrival in Zabbix
                assert started - 5 <= int(r["clock"]) <= time.time() + 1
        # the same reading in infrawatch's own store and in Zabbix: same value, same timestamp
        fs = rows("infrawatch.system.filesystem.used_percent[/]")
        series = stack.query("system.filesystem.used_percent", tag__mountpoint="/")
        points = {round(p[0], 3): p[1] for s in series for p in s["points"]}
        matched = [r for r in fs if round(int(r["clock"]) + int(r["ns"]) / 1e9, 3) in points]
        assert matched, (fs[:3], list(points.items())[:3])
        for r in matched:
            assert abs(float(r["value"]) - points[round(int(r["clock"]) + int(r["ns"]) / 1e9, 3)]) < 1e-6
    finally:
        stack.close()
