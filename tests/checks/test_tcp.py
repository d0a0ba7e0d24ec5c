"""TCP probe against real loopback listeners: connect, send/expect, TLS expiry, closed port, DNS failure."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from checks import build_check
from checks.base import Probe
from checks.config import ConfigError, load_yaml_file
from checks.model import PROBE_FAILURE, Event, Sample
from checks.tcp import cert_days_left, parse_host_port
from tests.servers.net import free_port
from tests.servers.tls import TlsFiles

ROOT = Path(__file__).resolve().parents[2]

_ISOLATED = r"""
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from checks import build_check
from checks.model import Event
async def main():
    c = build_check(json.loads(sys.argv[2]))
    try:
        out = await c.run()
    finally:
        await c.close()
    print(json.dumps([r.to_json() | {"event": isinstance(r, Event)} for r in out]))
asyncio.run(main())
"""


def run_isolated(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one check once inside a fresh network namespace (only a down `lo`): DNS lookups fail at once and
    nothing leaves the machine. Used to show that a DNS failure is a result (`dns_error`), not a crash."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to isolate DNS lookups")
    p = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", _ISOLATED, str(ROOT), json.dumps(raw)],
        capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 0, f"isolated run failed: {p.stderr}"
    return json.loads(p.stdout)


def by_name(readings: list[Any]) -> dict[str, Sample]:
    return {r.name: r for r in readings if isinstance(r, Sample)}


def failure(readings: list[Any]) -> Event | None:
    evs = [r for r in readings if isinstance(r, Event) and r.kind == PROBE_FAILURE]
    assert len(evs) <= 1
    return evs[0] if evs else None


def assert_declared(check: Probe[Any], readings: list[Any]) -> None:
    """Every emitted metric is declared in the class's METRICS, with the declared tags."""
    specs = {m.name: m for m in check.METRICS}
    for r in readings:
        if isinstance(r, Sample):
            assert r.name in specs, f"{r.name} is not declared in {type(check).__name__}.METRICS"
            extra = set(r.tags) - set(specs[r.name].tags) - set(check.config.tags)
            assert not extra, f"{r.name} has undeclared tags {extra}"


def assert_result(readings: list[Any], t: str, result: str) -> Event | None:
    s = by_name(readings)
    assert s[f"{t}.up"].tags["result"] == result, failure(readings)
    assert s[f"{t}.up"].value == (1.0 if result == "success" else 0.0)
    assert s[f"{t}.duration_seconds"].tags["result"] == result
    ev = failure(readings)
    if result == "success":
        assert ev is None
    else:
        assert ev is not None and ev.data["result"] == result and ev.data["reason"]
    return ev


def example_checks(type_name: str) -> list[Any]:
    data, _ = load_yaml_file(ROOT / "config" / "checks" / f"{type_name}.yaml")
    assert isinstance(data, dict) and data.get("checks"), "example config must be a mapping with a `checks:` list"
    items = data["checks"]
    assert all(i["type"] == type_name for i in items)
    return [build_check(raw, f"checks[{i}]") for i, raw in enumerate(items)]


# ---------------------------------------------------------------- servers


@pytest.fixture
async def echo_server():
    """A line server: answers `PING` with `+PONG`, anything else with `-ERR`; sends a banner on connect."""

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"220 infrawatch-test ready\r\n")
        try:
            while line := await r.readline():
                w.write(b"+PONG\r\n" if line.strip() == b"PING" else b"-ERR unknown\r\n")
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()


async def _tls_server(files: TlsFiles):
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            w.write(b"hello over tls\n")
            await w.drain()
            await r.read(100)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=files.server_context())


async def run_once(raw: dict[str, Any]) -> tuple[Probe[Any], list[Any]]:
    c = build_check(raw)
    try:
        out = await c.run()
    finally:
        await c.close()
    assert_declared(c, out)
    return c, out


# ---------------------------------------------------------------- tests


async def test_connect_send_expect(echo_server: int) -> None:
    _, out = await run_once({"type": "tcp", "target": f"localhost:{echo_server}", "send": "PING\r\n", "expect": r"\+PONG"})
    assert_result(out, "tcp", "success")
    s = by_name(out)
    assert s["tcp.connect_seconds"].value > 0
    assert s["tcp.response_seconds"].value > 0
    assert s["tcp.up"].tags["target"] == f"localhost:{echo_server}"


async def test_expect_mismatch_names_what_was_received(echo_server: int) -> None:
    _, out = await run_once(
        {"type": "tcp", "target": f"127.0.0.1:{echo_server}", "send": "HELLO\r\n", "expect": r"\+PONG", "read_limit": 40}
    )
    ev = assert_result(out, "tcp", "mismatch")
    assert "PONG" in ev.data["reason"] and "220 infrawatch-test" in ev.message


async def test_expect_waits_past_timeout_is_timeout(echo_server: int) -> None:
    # the server never sends "never" and keeps the connection open
    _, out = await run_once({"type": "tcp", "target": f"127.0.0.1:{echo_server}", "expect": "never", "timeout": 0.3})
    ev = assert_result(out, "tcp", "timeout")
    assert "waiting for a reply" in ev.data["reason"]


async def test_probe_reports_timeout_before_the_schedulers_deadline(echo_server: int) -> None:
    # the agent's scheduler runs a check under asyncio.timeout(effective_timeout) and drops its readings
    # when that fires; the probe must end first and report result=timeout itself
    c = build_check({"type": "tcp", "target": f"127.0.0.1:{echo_server}", "expect": "never", "timeout": 0.4})
    async with asyncio.timeout(c.config.effective_timeout):
        out = await c.run()
    assert_result(out, "tcp", "timeout")


async def test_closed_port_is_connection_failed() -> None:
    port = free_port()
    _, out = await run_once({"type": "tcp", "target": f"127.0.0.1:{port}"})
    ev = assert_result(out, "tcp", "connection_failed")
    assert "refused" in ev.data["reason"].lower()
    assert "tcp.connect_seconds" not in by_name(out)


async def test_tls_verified_with_ca(tls_ca: TlsFiles) -> None:
    srv = await _tls_server(tls_ca)
    port = srv.sockets[0].getsockname()[1]
    try:
        _, out = await run_once(
            {"type": "tcp", "target": f"localhost:{port}", "tls": True, "tls_ca_file": tls_ca.ca_file, "expect": "hello"}
        )
    finally:
        srv.close()
    assert_result(out, "tcp", "success")
    s = by_name(out)
    assert s["tcp.tls_handshake_seconds"].value > 0
    assert s["tcp.tls_cert_expiry_days"].value > 30  # trustme certificates are long-lived
    assert s["tcp.tls_chain_valid"].value == 1


async def test_tls_self_signed_expiring_in_5_days(self_signed_5d: TlsFiles) -> None:
    srv = await _tls_server(self_signed_5d)
    port = srv.sockets[0].getsockname()[1]
    try:
        _, bad = await run_once({"type": "tcp", "target": f"127.0.0.1:{port}", "tls": True})
        _, ok = await run_once({"type": "tcp", "target": f"127.0.0.1:{port}", "tls": True, "tls_verify": False})
    finally:
        srv.close()
    ev = assert_result(bad, "tcp", "tls_error")
    assert "certificate verification failed" in ev.data["reason"]
    # the expiry is still reported when verification fails (an expired certificate fails it too)
    assert 4.9 < by_name(bad)["tcp.tls_cert_expiry_days"].value <= 5.0
    assert by_name(bad)["tcp.tls_chain_valid"].value == 0
    assert_result(ok, "tcp", "success")
    assert 4.9 < by_name(ok)["tcp.tls_cert_expiry_days"].value <= 5.0
    assert "tcp.tls_chain_valid" not in by_name(ok)  # not verified, so not known


async def test_tls_expired_certificate(self_signed_expired: TlsFiles) -> None:
    srv = await _tls_server(self_signed_expired)
    port = srv.sockets[0].getsockname()[1]
    try:
        _, out = await run_once(
            {"type": "tcp", "target": f"localhost:{port}", "tls": True, "tls_ca_file": self_signed_expired.ca_file}
        )
    finally:
        srv.close()
    assert "certificate has expired" in assert_result(out, "tcp", "tls_error").data["reason"]
    assert -3.1 < by_name(out)["tcp.tls_cert_expiry_days"].value < -2.9
    assert by_name(out)["tcp.tls_chain_valid"].value == 0


async def test_silent_listener_is_timeout(silent_port: int) -> None:
    # connecting succeeds (the kernel completes the handshake) but nothing ever answers
    _, out = await run_once({"type": "tcp", "target": f"127.0.0.1:{silent_port}"})
    assert_result(out, "tcp", "success")
    _, out = await run_once({"type": "tcp", "target": f"127.0.0.1:{silent_port}", "expect": "^220", "timeout": 0.3})
    assert "waiting for a reply matching '^220'" in assert_result(out, "tcp", "timeout").data["reason"]
    _, out = await run_once({"type": "tcp", "target": f"127.0.0.1:{silent_port}", "tls": True, "timeout": 0.3})
    assert "in the TLS handshake" in assert_result(out, "tcp", "timeout").data["reason"]


async def test_ipv6_literal_target() -> None:
    async def handle(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"SSH-2.0-test\r\n")
        w.close()

    srv = await asyncio.start_server(handle, "::1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        _, out = await run_once({"type": "tcp", "target": f"[::1]:{port}", "expect": "^SSH-2\\.0"})
    finally:
        srv.close()
    assert_result(out, "tcp", "success")
    assert by_name(out)["tcp.up"].tags["target"] == f"[::1]:{port}"
    _, out = await run_once({"type": "tcp", "target": f"[::1]:{free_port('::1')}"})
    assert "cannot connect to [::1]:" in assert_result(out, "tcp", "connection_failed").data["reason"]


def test_cert_days_left_parses_der(tmp_path: Path) -> None:
    import ssl

    from tests.servers.tls import make_self_signed

    for days in (5.0, -3.0, 400.0):
        f = make_self_signed(tmp_path / str(days), days)
        der = ssl.PEM_cert_to_DER_cert(Path(f.cert_file).read_text())
        left = cert_days_left(der)
        assert left is not None and days - 0.01 < left <= days
    assert cert_days_left(b"\x30\x03\x02\x01\x00") is None


def test_dns_failure_is_a_result_not_a_crash() -> None:
    out = run_isolated({"type": "tcp", "target": "db.invalid:5432"})
    up = next(r for r in out if r.get("name") == "tcp.up")
    assert up["value"] == 0.0 and up["tags"]["result"] == "dns_error"
    ev = next(r for r in out if r["event"])
    assert "cannot resolve 'db.invalid'" in ev["data"]["reason"]


@pytest.mark.parametrize(
    "raw, where",
    [
        ({"target": "localhost"}, "missing port"),
        ({"target": "::1:80"}, "brackets"),
        ({"target": "h:99999"}, "port must be"),
        ({"target": "h:1", "expect": "("}, "expect: invalid regular expression"),
        ({"target": "h:1", "tls_ca_file": "/nonexistent/ca.pem"}, "tls_ca_file: no such file"),
        ({"target": "h:1", "sned": "x"}, "unknown key 'sned'"),
    ],
)
def test_invalid_config_is_rejected(raw: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as ei:
        build_check({"type": "tcp", **raw}, "checks[0]")
    assert where in str(ei.value) and "checks[0]" in str(ei.value)


def test_parse_host_port() -> None:
    assert parse_host_port("[::1]:6379") == ("::1", 6379)
    assert parse_host_port("cache.local", 11211) == ("cache.local", 11211)
    assert parse_host_port("10.0.0.1:80") == ("10.0.0.1", 80)


def test_example_config_is_valid() -> None:
    checks = example_checks("tcp")
    assert len(checks) >= 2


async def test_every_probe_failure_is_an_event_and_the_agent_keeps_running(silent_port: int) -> None:
    """Failing probes of every type under the agent's scheduler: each run yields up=0 and a probe.failure
    Event with the reason, never a check.error, and every check keeps running on its interval."""
    from agent.scheduler import Scheduler

    refused = free_port()
    raws = [
        {"type": "http", "name": "http-refused", "target": f"http://127.0.0.1:{refused}/"},
        {"type": "http", "name": "http-silent", "target": f"http://127.0.0.1:{silent_port}/"},
        {"type": "tcp", "name": "tcp-refused", "target": f"127.0.0.1:{refused}"},
        {"type": "redis", "name": "redis-silent", "target": f"127.0.0.1:{silent_port}"},
        {"type": "elasticsearch", "name": "es-refused", "target": f"http://127.0.0.1:{refused}"},
        {"type": "memcached", "name": "mc-silent", "target": f"127.0.0.1:{silent_port}"},
        {"type": "sql", "name": "pg-refused", "target": f"postgresql://u:p@127.0.0.1:{refused}/db"},
        {"type": "sql", "name": "my-silent", "target": f"mysql://u:p@127.0.0.1:{silent_port}/db"},
    ]
    checks = [build_check({**r, "interval": 0.4, "timeout": 0.3, "jitter": 0}) for r in raws]
    got: dict[str, list[list[Any]]] = {c.name: [] for c in checks}
    sched = Scheduler(checks, lambda c, readings: got[c.name].append(readings))
    sched.start()
    try:
        for _ in range(300):  # until every check has run 3 times (about 1 s; generous for a loaded machine)
            if all(len(v) >= 3 for v in got.values()):
                break
            await asyncio.sleep(0.05)
        assert all(not t.done() for t in sched._tasks)
    finally:
        await sched.stop()
        for c in checks:
            await c.close()
    for c in checks:
        runs = got[c.name]
        assert len(runs) >= 3, f"{c.name} ran {len(runs)} times"
        for readings in runs:
            expected = "timeout" if "silent" in c.name else "connection_failed"
            ev = assert_result(readings, c.config.type, expected)
            assert ev is not None and ev.tags["check"] == c.name and ev.message.endswith(ev.data["reason"])
            assert not [r for r in readings if isinstance(r, Event) and r.kind == "check.error"]
        assert sched.stats[c.name].errors == 0
