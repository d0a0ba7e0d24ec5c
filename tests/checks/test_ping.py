"""Ping check: config validation, loopback in-process, and real network namespaces (loss, dead targets, latency, modes)."""

from __future__ import annotations

import asyncio
import math
import socket
from pathlib import Path

import pytest

from checks import build_check
from checks.base import CONNECTION_FAILED, DNS_ERROR, SUCCESS, TIMEOUT
from checks.config import ConfigError, load_yaml_file
from checks.model import PROBE_FAILURE, Event, Sample
from checks.ping import PingCheck, default_gateways
from tests.servers.netns import CheckRunError, PingLab

ROOT = Path(__file__).resolve().parents[2]
DECLARED = {m.name for m in PingCheck.METRICS}


def _by(readings: list, name: str) -> dict[str, Sample]:
    out = {}
    for r in readings:
        if isinstance(r, Sample) and r.name == name:
            assert r.tags["target"] not in out
            out[r.tags["target"]] = r
    return out


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("raw", "path", "words"),
    [
        ({"type": "ping"}, "", "no targets"),
        ({"type": "ping", "targets": ["127.0.0.1", "bad host"]}, "targets[1]", "not an address"),
        ({"type": "ping", "targets": ["127.0.0.1"], "count": 0}, "", "count"),
        ({"type": "ping", "targets": ["127.0.0.1"], "count": 5, "echo_interval": "3s", "interval": "10s"}, "", "does not fit"),
        ({"type": "ping", "targets": ["127.0.0.1"], "socket": "icmp"}, "socket", "'dgram'"),
        ({"type": "ping", "targets": ["127.0.0.1"], "size": 4}, "", "size"),
        ({"type": "ping", "targets": ["127.0.0.1"], "echos": 3}, "echos", "unknown key"),
    ],
)
def test_invalid_config_names_the_problem(raw: dict, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as ei:
        build_check(raw)
    assert ei.value.path == path
    assert words in ei.value.message


def test_example_config_is_valid() -> None:
    data, _ = load_yaml_file(ROOT / "config" / "checks" / "ping.yaml")
    checks = [c for c in data["checks"] if c["type"] == "ping"]
    assert checks
    for i, c in enumerate(checks):
        assert isinstance(build_check(c, f"checks[{i}]"), PingCheck)


def test_default_gateways_parses_routing_tables(tmp_path: Path) -> None:
    r4 = tmp_path / "route"
    r4.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"  # default via 192.0.2.1
        "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"  # on-link, no gateway
        "eth1\t0000A8C0\t0102A8C0\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0\n"  # not a default route
    )
    r6 = tmp_path / "ipv6_route"
    r6.write_text(
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n"
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000002 00000000 00000003       lo\n"
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
        "20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
    )
    gws = dict(default_gateways(str(r4), str(r6)))
    assert set(gws) == {"192.0.2.1", "2001:db8::1", "fe80::1%lo"}
    assert gws["192.0.2.1"].sockaddr == ("192.0.2.1", 0)
    assert gws["fe80::1%lo"].sockaddr == ("fe80::1", 0, 0, socket.if_nametoindex("lo"))


# ---------------------------------------------------------------- in-process, loopback


def test_loopback_in_process_two_runs() -> None:
    """Root on the host: raw sockets (ping_group_range excludes gid 0 here) on loopback only."""
    check = build_check({"type": "ping", "targets": ["127.0.0.1", "127.0.0.77", "::1", "localhost"], "count": 4, "echo_interval": 0.02})

    async def twice() -> list[list]:
        try:
            return [await check.run(), await check.run()]
        finally:
            await check.close()

    for readings in asyncio.run(twice()):
        assert {r.name for r in readings if isinstance(r, Sample)} <= DECLARED
        assert not [r for r in readings if isinstance(r, Event)]
        up = _by(readings, "ping.up")
        assert set(up) == {"127.0.0.1", "127.0.0.77", "::1", "localhost"}
        for t, s in up.items():
            assert s.value == 1.0 and s.tags["result"] == SUCCESS, t
            assert _by(readings, "ping.loss_ratio")[t].value == 0.0
            mn, avg, mx = (_by(readings, f"ping.rtt_{k}_seconds")[t].value for k in ("min", "avg", "max"))
            assert 0 < mn <= avg <= mx < 1.0
            assert _by(readings, "ping.rtt_mdev_seconds")[t].value >= 0
            assert _by(readings, "ping.jitter_seconds")[t].value >= 0
        assert up["localhost"].tags["address"] in ("127.0.0.1", "::1")
        assert "address" not in up["127.0.0.1"].tags
        dur = [r for r in readings if isinstance(r, Sample) and r.name == "ping.duration_seconds"]
        assert len(dur) == 1 and dur[0].tags == {} and dur[0].value > 0


async def test_thousand_loopback_targets_in_process_no_loss() -> None:
    """1,000 addresses of 127.0.0.0/8 × 3 echoes in one run on the host's loopback: nothing lost."""
    targets = [f"127.{10 + i // 250}.{i % 7}.{i % 250 + 1}" for i in range(1000)]
    assert len(set(targets)) == 1000
    check = build_check({"type": "ping", "targets": targets, "count": 3, "echo_interval": 0.05, "echo_timeout": 0.5, "rate": 5000})
    try:
        readings = await check.run()
    finally:
        await check.close()
    loss = _by(readings, "ping.loss_ratio")
    up = _by(readings, "ping.up")
    assert set(loss) == set(up) == set(targets)
    assert all(s.value == 0.0 for s in loss.values())
    assert all(s.value == 1.0 and s.tags["result"] == SUCCESS for s in up.values())
    assert not [r for r in readings if isinstance(r, Event)]


# ---------------------------------------------------------------- network namespaces


def _sum_loss(res, targets: list[str], count: int) -> int:
    lost = 0
    for t in targets:
        loss = res.value("ping.loss_ratio", t)
        lost += round(loss * count)
    return lost


def test_loss_injected_netem_or_nftables(ping_lab: PingLab) -> None:
    """~30 % loss injected in B: with netem on B's veth when the kernel has sch_netem, else (this
    kernel) with an nftables rule in B dropping echo requests. Measured loss is within ±4.5 sigma of
    30 % over 400 echoes, and exactly the number of packets dropped (no false loss)."""
    targets = list(ping_lab.B4_LIVE[:4])
    count = 100
    with ping_lab.loss_in_b(30) as dropped:
        with ping_lab.runner({"type": "ping", "targets": targets, "count": count, "echo_interval": 0.01, "echo_timeout": 0.5, "interval": 30}) as r:
            res = r.run()
        n_dropped = dropped()
    print(f"loss injected with {ping_lab.loss_method}")
    n = count * len(targets)
    lost = _sum_loss(res, targets, count)
    sigma = math.sqrt(n * 0.3 * 0.7)
    assert abs(lost - 0.3 * n) <= 4.5 * sigma, f"{lost} of {n} lost ({ping_lab.loss_method})"
    assert lost == n_dropped, f"measured {lost} lost echoes, {ping_lab.loss_method} dropped {n_dropped}"
    for t in targets:
        assert res.value("ping.up", t) == 1.0
        assert 0 < res.value("ping.loss_ratio", t) < 1


def test_address_removed_goes_down_with_one_event(ping_lab: PingLab) -> None:
    addr = "198.18.0.90"
    ping_lab.b.ip("addr", "add", f"{addr}/24", "dev", "veth0")
    try:
        with ping_lab.runner({"type": "ping", "targets": [addr], "count": 3, "echo_interval": 0.05, "echo_timeout": 0.5}) as r:
            first = r.run()
            assert first.value("ping.up", addr) == 1.0 and first.value("ping.loss_ratio", addr) == 0.0
            assert not first.events()
            ping_lab.b.ip("addr", "del", f"{addr}/24", "dev", "veth0")
            down = r.run()
            assert down.value("ping.up", addr) == 0.0
            assert down.value("ping.loss_ratio", addr) == 1.0
            assert down.value("ping.rtt_avg_seconds", addr) is None
            assert down.tags("ping.up", addr)["result"] == TIMEOUT
            (ev,) = down.events()
            assert ev["kind"] == PROBE_FAILURE and ev["tags"]["target"] == addr and ev["tags"]["result"] == TIMEOUT
            assert "no reply to 3 echo requests" in ev["data"]["reason"] and ev["data"]["received"] == 0
            assert not r.run().events(), "a target still down does not repeat the event"
            ping_lab.b.ip("addr", "add", f"{addr}/24", "dev", "veth0")
            back = r.run()
            assert back.value("ping.up", addr) == 1.0 and not back.events()
    finally:
        ping_lab.b.ip("addr", "del", f"{addr}/24", "dev", "veth0", check=False)


@pytest.mark.parametrize("socket_mode", ["raw", "dgram"])
def test_thousand_targets_exact_within_interval(ping_lab: PingLab, socket_mode: str) -> None:
    """1,000 targets in one check: loopback and B addresses (IPv4 and IPv6) alive; unassigned on-link
    addresses, an unreachable route and a blackhole route dead. Every live target loses nothing,
    every dead one loses everything, and the run ends inside the check's timeout (< interval)."""
    loop = [f"127.{i // 250 + 1}.{(i * 7) % 250}.{i % 250 + 1}" for i in range(899)] + ["::1"]
    live = [*loop, *ping_lab.B4_LIVE, *ping_lab.b6_live]
    dead_onlink = [f"198.18.0.{i}" for i in range(200, 215)] + [f"{ping_lab.v6}::1:{i}" for i in range(1, 6)]
    dead_unreach = [f"198.19.1.{i}" for i in range(1, 11)]
    dead_blackhole = [f"198.19.2.{i}" for i in range(1, 11)]
    dead = dead_onlink + dead_unreach + dead_blackhole
    targets = live + dead
    assert len(targets) == len(set(targets)) == 1000
    cfg = {"type": "ping", "targets": targets, "count": 3, "echo_interval": 0.2, "echo_timeout": 0.5, "rate": 5000, "interval": 10, "socket": socket_mode}
    old = ping_lab.a.sysctl("net.ipv4.ping_group_range", "0 2147483647")
    try:
        with ping_lab.runner(cfg) as r:
            res = r.run()  # the runner applies the check's timeout (8 s) like the scheduler
    finally:
        ping_lab.a.sysctl("net.ipv4.ping_group_range", old)
    assert res.modes == {"ipv4": socket_mode, "ipv6": socket_mode}
    for t in live:
        assert res.value("ping.loss_ratio", t) == 0.0, t
        assert res.value("ping.up", t) == 1.0, t
        assert res.value("ping.rtt_max_seconds", t) < 0.5
    for t in dead:
        assert res.value("ping.loss_ratio", t) == 1.0, t
        assert res.value("ping.up", t) == 0.0, t
    for t in dead_onlink + dead_blackhole:
        assert res.tags("ping.up", t)["result"] in (TIMEOUT, CONNECTION_FAILED), t
    for t in dead_unreach:
        assert res.tags("ping.up", t)["result"] == CONNECTION_FAILED
    events = {e["tags"]["target"]: e for e in res.events()}
    assert set(events) == set(dead)
    assert events[dead_unreach[0]]["data"]["reason"] == "send failed: no route to host"
    assert "blackhole" in events[dead_blackhole[0]]["data"]["reason"]
    assert {s["name"] for s in res.readings if "name" in s} <= DECLARED
    assert len(res.samples("ping.duration_seconds")) == 1


@pytest.mark.parametrize("socket_mode", ["raw", "dgram"])
def test_latency_netem_or_userspace_responder(ping_lab: PingLab, socket_mode: str) -> None:
    """50 ms of latency: netem delay on B's veth when the kernel has sch_netem; else (this kernel) C,
    which ignores echoes itself, and a userspace responder in C answering after 50 ms."""
    old = ping_lab.a.sysctl("net.ipv4.ping_group_range", "0 2147483647")
    proc = None
    netem = ping_lab.netem_available()
    try:
        if netem:
            ping_lab.b.exec("tc", "qdisc", "add", "dev", "veth0", "root", "netem", "delay", "50ms")
            targets = [ping_lab.B4_LIVE[10], ping_lab.b6_live[3]]
        else:
            proc = ping_lab.start_echo_responder(0.05)
            targets = [ping_lab.C4, ping_lab.c6]
        print(f"latency from {'netem' if netem else 'the userspace responder (no netem on this kernel)'}")
        with ping_lab.runner({"type": "ping", "targets": targets, "count": 5, "echo_interval": 0.02, "echo_timeout": 1, "socket": socket_mode}) as r:
            res = r.run()
        assert res.modes == {"ipv4": socket_mode, "ipv6": socket_mode}
        for t in targets:
            assert res.value("ping.loss_ratio", t) == 0.0
            # kernel receive timestamps: the 50 ms plus little; generous upper bounds for a loaded CI host
            assert 0.049 <= res.value("ping.rtt_min_seconds", t) <= res.value("ping.rtt_avg_seconds", t) <= 0.15, t
            assert res.value("ping.rtt_max_seconds", t) <= 0.3
            assert 0 <= res.value("ping.rtt_mdev_seconds", t) < 0.05
            assert 0 <= res.value("ping.jitter_seconds", t) < 0.05
    finally:
        if netem:
            ping_lab.b.exec("tc", "qdisc", "del", "dev", "veth0", "root", check=False)
        if proc is not None:
            proc.kill()
            proc.wait()
        ping_lab.a.sysctl("net.ipv4.ping_group_range", old)


def test_unprivileged_datagram_sockets(ping_lab: PingLab) -> None:
    """Without CAP_NET_RAW, in group 65534, with ping_group_range opened: datagram sockets, exact results."""
    old = ping_lab.a.sysctl("net.ipv4.ping_group_range", "0 2147483647")
    try:
        targets = ["127.0.0.1", "::1", ping_lab.B4_LIVE[5], ping_lab.b6_live[1], "198.18.0.220"]
        with ping_lab.runner({"type": "ping", "targets": targets, "count": 3, "echo_interval": 0.02, "echo_timeout": 0.5}, unprivileged=True) as r:
            res = r.run()
        assert res.modes == {"ipv4": "dgram", "ipv6": "dgram"}
        for t in targets[:4]:
            assert res.value("ping.loss_ratio", t) == 0.0 and res.value("ping.up", t) == 1.0
        assert res.value("ping.loss_ratio", "198.18.0.220") == 1.0
    finally:
        ping_lab.a.sysctl("net.ipv4.ping_group_range", old)


def test_no_socket_allowed_error_names_both_options(ping_lab: PingLab) -> None:
    """Without CAP_NET_RAW and ping_group_range = "1 0": neither socket kind opens; the error says how to fix it."""
    old = ping_lab.a.sysctl("net.ipv4.ping_group_range", "1 0")
    try:
        with ping_lab.runner({"type": "ping", "targets": ["127.0.0.1"]}, unprivileged=True) as r:
            with pytest.raises(CheckRunError) as ei:
                r.run()
    finally:
        ping_lab.a.sysctl("net.ipv4.ping_group_range", old)
    msg = str(ei.value)
    assert "IcmpPermissionError" in msg
    assert "net.ipv4.ping_group_range" in msg and "CAP_NET_RAW" in msg


def test_names_resolved_each_run_and_dns_failure_is_a_result(ping_lab: PingLab) -> None:
    """Names come from A's own hosts file; A's resolver is its loopback (nothing listens): no traffic leaves A."""
    targets = ["alpha.iwtest", "beta6.iwtest", "missing.iwtest", "nothing.invalid"]
    with ping_lab.runner({"type": "ping", "targets": targets, "count": 2, "echo_interval": 0.02, "echo_timeout": 0.5}) as r:
        res = r.run()
    assert res.value("ping.up", "alpha.iwtest") == 1.0
    assert res.tags("ping.up", "alpha.iwtest")["address"] == "198.18.0.3"
    assert res.tags("ping.loss_ratio", "beta6.iwtest")["address"] == f"{ping_lab.v6}::3"
    assert res.value("ping.up", "beta6.iwtest") == 1.0
    assert res.value("ping.up", "missing.iwtest") == 0.0
    assert res.tags("ping.up", "missing.iwtest")["result"] == DNS_ERROR
    assert res.value("ping.loss_ratio", "missing.iwtest") is None
    assert res.value("ping.up", "nothing.invalid") == 0.0
    assert res.tags("ping.up", "nothing.invalid")["result"] == DNS_ERROR
    events = {e["tags"]["target"]: e for e in res.events()}
    assert set(events) == {"missing.iwtest", "nothing.invalid"}
    for name, ev in events.items():
        assert ev["tags"]["result"] == DNS_ERROR and name in ev["data"]["reason"]


def test_default_gateway_targets(ping_lab: PingLab) -> None:
    a = ping_lab.a
    a.ip("route", "add", "default", "via", ping_lab.B4_LIVE[0])
    a.ip("-6", "route", "add", "default", "via", "fe80::2", "dev", "veth0")
    try:
        with ping_lab.runner({"type": "ping", "default_gateway": True, "count": 2, "echo_interval": 0.02, "echo_timeout": 0.5}) as r:
            res = r.run()
    finally:
        a.ip("route", "del", "default", check=False)
        a.ip("-6", "route", "del", "default", check=False)
    up = {s["tags"]["target"]: s for s in res.samples("ping.up")}
    assert set(up) == {ping_lab.B4_LIVE[0], "fe80::2%veth0"}
    for s in up.values():
        assert s["value"] == 1.0 and s["tags"]["role"] == "gateway"
