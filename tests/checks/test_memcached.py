"""Memcached probe against real memcached processes on loopback: stats, hit ratio, evictions, failures."""

from __future__ import annotations

import socket

import pytest

from checks import build_check
from checks.config import ConfigError
from tests.checks.test_tcp import assert_declared, assert_result, by_name, example_checks, run_isolated
from tests.servers.memcached import MemcachedServer, start_memcached
from tests.servers.net import free_port
from tests.servers.redis import RedisServer


class Client:
    """A minimal blocking memcached text client used to create hits, misses and evictions."""

    def __init__(self, srv: MemcachedServer) -> None:
        self.f = socket.create_connection((srv.host, srv.port)).makefile("rwb")

    def set(self, key: str, value: bytes) -> None:
        self.f.write(f"set {key} 0 0 {len(value)}\r\n".encode() + value + b"\r\n")
        self.f.flush()
        assert self.f.readline() == b"STORED\r\n"

    def get(self, key: str) -> bytes | None:
        self.f.write(f"get {key}\r\n".encode())
        self.f.flush()
        head = self.f.readline()
        if head == b"END\r\n":
            return None
        n = int(head.split()[3])
        data = self.f.read(n + 2)[:-2]
        assert self.f.readline() == b"END\r\n"
        return data

    def close(self) -> None:
        self.f.close()


async def test_stats_and_hit_ratio(memcached_server: MemcachedServer) -> None:
    cl = Client(memcached_server)
    cl.set("iw:a", b"1" * 1000)
    c = build_check({"type": "memcached", "target": f"localhost:{memcached_server.port}"})
    first = await c.run()
    assert_declared(c, first)
    assert_result(first, "memcached", "success")
    s = by_name(first)
    assert "memcached.hit_ratio" not in s  # nothing to compare with yet
    assert s["memcached.limit_bytes"].value == memcached_server.memory_mb * 1024 * 1024
    assert s["memcached.used_bytes"].value >= 1000
    assert s["memcached.memory_used_ratio"].value == pytest.approx(s["memcached.used_bytes"].value / s["memcached.limit_bytes"].value)
    assert s["memcached.curr_connections"].value >= 2  # this test's client and the probe
    assert s["memcached.items"].value >= 1
    assert s["memcached.evictions_total"].value == 0
    assert cl.get("iw:a") == b"1" * 1000
    assert cl.get("iw:a") is not None
    assert cl.get("iw:a") is not None
    assert cl.get("iw:nope") is None
    second = await c.run()
    assert by_name(second)["memcached.hit_ratio"].value == pytest.approx(0.75)
    assert "memcached.hit_ratio" not in by_name(await c.run())  # no gets since: no ratio
    cl.close()
    await c.close()


async def test_evictions_counted() -> None:
    srv = start_memcached(memory_mb=2)
    try:
        cl = Client(srv)
        for i in range(100):
            cl.set(f"big{i}", b"x" * 50_000)
        cl.close()
        c = build_check({"type": "memcached", "target": srv.target})
        out = await c.run()
    finally:
        srv.stop()
    assert_result(out, "memcached", "success")
    assert by_name(out)["memcached.evictions_total"].value > 0
    assert by_name(out)["memcached.memory_used_ratio"].value > 0.5


async def test_closed_port_is_connection_failed() -> None:
    out = await build_check({"type": "memcached", "target": f"127.0.0.1:{free_port()}"}).run()
    assert "refused" in assert_result(out, "memcached", "connection_failed").data["reason"].lower()


async def test_wrong_service_is_mismatch(redis_server: RedisServer) -> None:
    # a real redis-server answers `stats` with an error line, not STAT lines
    out = await build_check({"type": "memcached", "target": redis_server.target}).run()
    ev = assert_result(out, "memcached", "mismatch")
    assert "is this a memcached server?" in ev.data["reason"]


async def test_silent_listener_is_timeout(silent_port: int) -> None:
    out = await build_check({"type": "memcached", "target": f"127.0.0.1:{silent_port}", "timeout": 0.4}).run()
    assert "waiting for the stats reply" in assert_result(out, "memcached", "timeout").data["reason"]


def test_dns_failure_is_a_result() -> None:
    out = run_isolated({"type": "memcached", "target": "mc.invalid"})
    assert next(r for r in out if r.get("name") == "memcached.up")["tags"]["result"] == "dns_error"


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ConfigError) as ei:
        build_check({"type": "memcached", "target": "h:x"}, "checks[1]")
    assert "checks[1]: target: port must be" in str(ei.value)


def test_example_config_is_valid() -> None:
    assert example_checks("memcached")
