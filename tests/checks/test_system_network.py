"""network check against the OS, inside a private network namespace so the counts are exact: TCP connections by
state (netlink and /proc/net/tcp* agree), interface byte rates for traffic we send, default excludes, counter resets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from checks import build_check
from checks.model import Sample
from checks.system.network import TCP_STATES, NetworkCheck

ROOT = Path(__file__).resolve().parents[2]

NS_SCRIPT = r"""
import asyncio, json, socket, subprocess, threading, time
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
from checks import build_check
from checks.system.network import TcpStateCounter

def counts():
    nl, proc = TcpStateCounter(), TcpStateCounter(use_netlink=False)
    out = {"netlink": nl.count(), "netlink_source": nl.source, "proc": proc.count()}
    nl.close()
    return out

async def main():
    res = {"empty": counts()}
    ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(8)
    ls6 = socket.socket(socket.AF_INET6); ls6.bind(("::1", 0)); ls6.listen(8)
    port, port6 = ls.getsockname()[1], ls6.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    clients.append(socket.create_connection(("::1", port6)))
    servers = [ls.accept()[0] for _ in range(3)] + [ls6.accept()[0]]
    clients[0].close()                       # client 0: FIN_WAIT2, its server side: CLOSE_WAIT
    clients[1].close(); servers[1].close()   # client 1: TIME_WAIT (active closer), server side gone
    time.sleep(0.2)
    res["states"] = counts()
    check = build_check({"type": "network", "include_interfaces": ["lo"], "exclude_interfaces": []})
    default = build_check({"type": "network"})
    res["default_first"] = [[r.name, r.value, r.tags] for r in await default.run()]
    first = await check.run()
    res["first"] = [[r.name, r.value, r.tags] for r in first]
    t0 = time.monotonic()
    await check.run()                        # baseline right before the traffic
    t1 = time.monotonic()
    payload = b"x" * (4 << 20)
    def receive():
        got = 0
        while got < len(payload):
            got += len(servers[2].recv(1 << 20))
    rx = threading.Thread(target=receive)
    rx.start()
    clients[2].sendall(payload)
    rx.join()
    t2 = time.monotonic()
    out = await check.run()
    t3 = time.monotonic()
    res["after"] = [[r.name, r.value, r.tags] for r in out]
    res["window"] = [t3 - t0, t2 - t1]
    res["payload"] = len(payload)
    res["default_second"] = [[r.name, r.value, r.tags] for r in await default.run()]
    for c in (check, default):
        await c.close()
    print(json.dumps(res))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def netns_result() -> dict:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.fail("this test runs the check in a private network namespace: it needs root, unshare (util-linux) and ip (iproute2)")
    p = subprocess.run(["unshare", "--net", sys.executable, "-c", NS_SCRIPT], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_tcp_states_are_exact_and_both_sources_agree(netns_result: dict) -> None:
    zero = {s: 0 for s in TCP_STATES}
    assert netns_result["empty"]["netlink"] == zero == netns_result["empty"]["proc"]
    st = netns_result["states"]
    expected = {**zero, "listen": 2, "established": 4, "fin_wait2": 1, "close_wait": 1, "time_wait": 1}
    assert st["proc"] == expected  # /proc/net/tcp + /proc/net/tcp6
    assert st["netlink"] == expected  # sock_diag dump (the default source)
    assert st["netlink_source"] == "netlink"


def test_check_reports_every_state_and_no_rate_on_the_first_run(netns_result: dict) -> None:
    first = netns_result["first"]
    assert {name for name, _, _ in first} == {"system.network.tcp_connections"}
    assert {tags["state"] for _, _, tags in first} == set(TCP_STATES)  # zeros included: series stay continuous
    by_state = {tags["state"]: v for _, v, tags in first}
    assert by_state["listen"] == 2 and by_state["established"] == 4


def test_loopback_traffic_shows_in_the_rates(netns_result: dict) -> None:
    v = {name: val for name, val, tags in netns_result["after"] if tags.get("interface") == "lo"}
    assert len(v) == 8
    hi, lo = netns_result["window"]
    payload = netns_result["payload"]
    # the check's interval lies between [t1, t2] and [t0, t3]; loopback counts every byte once received and once sent
    assert v["system.network.rx_bytes_per_second"] * hi >= payload
    assert v["system.network.tx_bytes_per_second"] == v["system.network.rx_bytes_per_second"]
    assert v["system.network.rx_packets_per_second"] * hi >= payload / 65536
    assert v["system.network.rx_bytes_per_second"] * lo <= payload * 1.2 + 1_000_000
    for k in ("rx_errors", "tx_errors", "rx_drops", "tx_drops"):
        assert v[f"system.network.{k}_per_second"] == 0.0


def test_loopback_is_excluded_by_default(netns_result: dict) -> None:
    for key in ("default_first", "default_second"):
        assert all("interface" not in tags for _, _, tags in netns_result[key]), key


async def test_host_interfaces_on_the_second_run() -> None:
    """In the test's own namespace: every non-excluded interface of /proc/net/dev gets all eight rates, never negative."""
    check = build_check({"type": "network", "tcp_states": False})
    assert await check.run() == []
    out = await check.run()
    names = {line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]}
    expected = {n for n in names if n != "lo" and not n.startswith(("veth", "docker", "br-", "cali", "lxc"))}
    assert {r.tags["interface"] for r in out if isinstance(r, Sample)} == expected
    assert all(isinstance(r, Sample) and r.value >= 0 for r in out)
    assert len(out) == 8 * len(expected)
    await check.close()


NETDEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
  eth9: {rx} 10 1 2 0 0 0 0 {tx} 20 3 4 0 0 0 0
veth12: 1 1 1 1 0 0 0 0 1 1 1 1 0 0 0 0
"""


def test_rates_from_counters_resets_and_globs() -> None:
    """Synthetic /proc/net/dev text (the parser seam): exact rates, a counter going backwards gives no rate."""
    c = NetworkCheck(NetworkCheck.Config(type="network"))
    assert c.interfaces(1.0, 1.7e9, NETDEV.format(rx=1000, tx=500).encode()) == []
    out = c.interfaces(3.0, 1.7e9, NETDEV.format(rx=5000, tx=700).encode())
    v = {r.name: r.value for r in out if isinstance(r, Sample)}
    assert {r.tags["interface"] for r in out if isinstance(r, Sample)} == {"eth9"}  # veth* excluded by default
    assert v["system.network.rx_bytes_per_second"] == 2000.0 and v["system.network.tx_bytes_per_second"] == 100.0
    assert v["system.network.rx_errors_per_second"] == 0.0
    assert c.interfaces(5.0, 1.7e9, NETDEV.format(rx=10, tx=800).encode()) == []  # rx went backwards: wrap or re-created
    out = c.interfaces(7.0, 1.7e9, NETDEV.format(rx=210, tx=1000).encode())
    assert {r.name: r.value for r in out if isinstance(r, Sample)}["system.network.rx_bytes_per_second"] == 100.0
    only_veth = NetworkCheck(NetworkCheck.Config(type="network", include_interfaces=("veth*",), exclude_interfaces=()))
    only_veth.interfaces(1.0, 1.7e9, NETDEV.format(rx=1, tx=1).encode())
    out = only_veth.interfaces(2.0, 1.7e9, NETDEV.format(rx=1, tx=1).encode())
    assert {r.tags["interface"] for r in out if isinstance(r, Sample)} == {"veth12"}


async def test_tcp_states_counted_on_the_first_run_then_at_most_every_tcp_states_interval() -> None:
    every = build_check({"type": "network", "tcp_states_interval": 0, "include_interfaces": ["none"]})
    sparse = build_check({"type": "network", "tcp_states_interval": "1h", "include_interfaces": ["none"]})
    for _ in range(3):
        assert {r.tags["state"] for r in await every.run()} == set(TCP_STATES)
    assert len(await sparse.run()) == len(TCP_STATES)
    assert await sparse.run() == [] and await sparse.run() == []
    off = build_check({"type": "network", "tcp_states": False, "include_interfaces": ["none"]})
    assert await off.run() == []
    for c in (every, sparse, off):
        await c.close()
