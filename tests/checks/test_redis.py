"""Redis probe against real redis-server processes on loopback: INFO metrics, hit ratio, auth, ACL, TLS, replica, stop."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest
import redis

from checks import build_check
from checks.config import ConfigError
from tests.checks.test_tcp import assert_declared, assert_result, by_name, example_checks, run_isolated
from tests.servers.redis import PASSWORD, RedisServer
from tests.servers.tls import TlsFiles


async def run_check(c: Any) -> list[Any]:
    out = await c.run()
    assert_declared(c, out)
    return out


async def run_once(raw: dict[str, Any]) -> list[Any]:
    c = build_check({"type": "redis", **raw})
    try:
        return await run_check(c)
    finally:
        await c.close()


async def test_password_info_metrics_and_hit_ratio(redis_server: RedisServer) -> None:
    r = redis.Redis(host=redis_server.host, port=redis_server.port, password=PASSWORD)
    r.set("iw:k", "v")
    c = build_check({"type": "redis", "target": f"localhost:{redis_server.port}", "password": PASSWORD})
    first = await run_check(c)
    assert_result(first, "redis", "success")
    s = by_name(first)
    assert "redis.keyspace_hit_ratio" not in s  # no previous run to compare with
    assert s["redis.used_memory_bytes"].value > 100_000
    assert s["redis.connected_clients"].value >= 2  # the probe and this test's client
    assert s["redis.role"].value == 1.0 and s["redis.role"].tags["role"] == "master"
    assert s["redis.evicted_keys_total"].value == 0
    assert s["redis.ping_seconds"].value > 0 and s["redis.connect_seconds"].value > 0
    assert "redis.ops_per_second" in s and "redis.connected_replicas" in s
    for _ in range(3):
        assert r.get("iw:k") == b"v"
    assert r.get("iw:missing") is None
    second = await run_check(c)
    assert by_name(second)["redis.keyspace_hit_ratio"].value == pytest.approx(0.75)
    third = await run_check(c)  # no lookups in between: no ratio rather than a made-up one
    assert "redis.keyspace_hit_ratio" not in by_name(third)
    r.close()


async def test_wrong_or_missing_password_is_auth_failed(redis_server: RedisServer) -> None:
    out = await run_once({"target": redis_server.target, "password": "not-the-password"})
    ev = assert_result(out, "redis", "auth_failed")
    assert "not-the-password" not in ev.message
    assert "redis.used_memory_bytes" not in by_name(out)
    out = await run_once({"target": redis_server.target})
    assert "Authentication required" in assert_result(out, "redis", "auth_failed").data["reason"]


async def test_acl_user(redis_server: RedisServer) -> None:
    r = redis.Redis(host=redis_server.host, port=redis_server.port, password=PASSWORD)
    r.acl_setuser("iw-probe", enabled=True, passwords=["+probe-pw"], commands=["+ping", "+info"])
    r.acl_setuser("iw-noinfo", enabled=True, passwords=["+probe-pw"], commands=["+ping"])
    r.close()
    out = await run_once({"target": redis_server.target, "username": "iw-probe", "password": "probe-pw"})
    assert_result(out, "redis", "success")
    out = await run_once({"target": redis_server.target, "username": "iw-noinfo", "password": "probe-pw"})
    assert "info" in assert_result(out, "redis", "auth_failed").data["reason"].lower()


async def test_stopped_server_is_connection_failed(redis_factory: Callable[..., RedisServer]) -> None:
    srv = redis_factory()
    c = build_check({"type": "redis", "target": srv.target, "password": PASSWORD})
    try:
        assert_result(await run_check(c), "redis", "success")
        srv.stop()
        out = await run_check(c)
    finally:
        await c.close()
    ev = assert_result(out, "redis", "connection_failed")
    assert "refused" in ev.data["reason"].lower()


async def test_evictions_and_maxmemory(redis_factory: Callable[..., RedisServer]) -> None:
    srv = redis_factory(extra_args=("--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"))
    r = redis.Redis(host=srv.host, port=srv.port, password=PASSWORD)
    pipe = r.pipeline(transaction=False)
    for i in range(400):
        pipe.set(f"iw:big:{i}", b"x" * 20_000)
    pipe.execute()
    r.close()
    out = await run_once({"target": srv.target, "password": PASSWORD})
    assert_result(out, "redis", "success")
    s = by_name(out)
    assert s["redis.maxmemory_bytes"].value == 2 * 1024 * 1024
    assert s["redis.evicted_keys_total"].value > 0
    assert s["redis.used_memory_bytes"].value <= 2 * 1024 * 1024 * 1.2


async def test_tls(redis_factory: Callable[..., RedisServer], tls_ca: TlsFiles) -> None:
    srv = redis_factory(tls_cert=tls_ca.cert_file, tls_key=tls_ca.key_file, tls_ca=tls_ca.ca_file)
    base = {"target": f"localhost:{srv.port}", "password": PASSWORD, "tls": True}
    assert_result(await run_once({**base, "tls_ca_file": tls_ca.ca_file}), "redis", "success")
    assert_result(await run_once({**base, "tls_verify": False}), "redis", "success")
    out = await run_once(base)  # the system store does not know the test CA
    assert "certificate verify failed" in assert_result(out, "redis", "tls_error").data["reason"]
    out = await run_once({"target": f"localhost:{srv.port}", "password": PASSWORD})  # plain text to a TLS port
    assert by_name(out)["redis.up"].value == 0


async def test_replica_role_and_link(redis_server: RedisServer, redis_factory: Callable[..., RedisServer]) -> None:
    master = redis.Redis(host=redis_server.host, port=redis_server.port, password=PASSWORD)
    master.config_set("repl-diskless-sync-delay", 0)  # full sync at once instead of after 5 s
    master.close()
    rep = redis_factory(extra_args=("--replicaof", "127.0.0.1", str(redis_server.port), "--masterauth", PASSWORD))
    c = build_check({"type": "redis", "target": rep.target, "password": PASSWORD})
    try:
        for _ in range(100):  # the first sync takes a moment
            out = await run_check(c)
            if by_name(out).get("redis.replication_link_up") and by_name(out)["redis.replication_link_up"].value == 1:
                break
            await asyncio.sleep(0.1)
        s = by_name(out)
        assert_result(out, "redis", "success")
        assert s["redis.role"].value == 0 and s["redis.role"].tags["role"] == "replica"
        assert s["redis.replication_link_up"].value == 1
        assert "redis.replication_last_io_seconds" in s
        assert "redis.connected_replicas" not in s
    finally:
        await c.close()


async def test_silent_listener_is_timeout(silent_port: int) -> None:
    out = await run_once({"target": f"127.0.0.1:{silent_port}", "password": PASSWORD, "timeout": 0.4})
    ev = assert_result(out, "redis", "timeout")
    assert "while connecting" in ev.data["reason"] and PASSWORD not in ev.message


def test_dns_failure_is_a_result() -> None:
    out = run_isolated({"type": "redis", "target": "cache.invalid:6379"})
    assert next(r for r in out if r.get("name") == "redis.up")["tags"]["result"] == "dns_error"


@pytest.mark.parametrize(
    "raw, where",
    [
        ({"target": "h:0"}, "target: port must be"),
        ({"target": "h", "username": "u"}, "username needs password"),
        ({"target": "h", "db": -1}, "db must not be negative"),
    ],
)
def test_invalid_config_is_rejected(raw: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as ei:
        build_check({"type": "redis", **raw}, "checks[0]")
    assert where in str(ei.value)


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    # as on a host installed without the `redis` extra: the check module is imported afresh and fails
    monkeypatch.delitem(sys.modules, "checks.redis", raising=False)
    for mod in ("redis", "redis.asyncio", "redis.exceptions"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(ConfigError) as ei:
        build_check({"type": "redis", "target": "cache:6379"}, "checks[4]")
    assert "checks[4].type" in str(ei.value) and "pip install 'infrawatch[redis]'" in str(ei.value)


def test_default_port_and_no_password_in_repr() -> None:
    c = build_check({"type": "redis", "target": "cache", "password": "hunter2"})
    assert c._port == 6379  # type: ignore[attr-defined]
    assert "hunter2" not in repr(c.config)


def test_example_config_is_valid() -> None:
    assert len(example_checks("redis")) >= 2
