"""system (host) check against the OS, the catalogue rule for all five host checks, and their shared helpers (Rates, GlobFilter)."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path


from checks import DEFAULT_CHECKS, build_check, load_check_class
from checks.catalogue import all_metrics
from checks.model import Sample, decode_sample
from checks.system import GlobFilter, Rates
from checks.system.host import ProcessCounter

SYSTEM_TYPES = ("cpu", "memory", "disk", "network", "system")


async def test_load_uptime_and_counts_agree_with_proc() -> None:
    check = build_check({"type": "system"})
    la0 = Path("/proc/loadavg").read_text().split()
    up0 = float(Path("/proc/uptime").read_text().split()[0])
    out = await check.run()
    la1 = Path("/proc/loadavg").read_text().split()
    up1 = float(Path("/proc/uptime").read_text().split()[0])
    v = {r.name: r.value for r in out if isinstance(r, Sample)}
    for i, key in enumerate(("1m", "5m", "15m")):
        assert v[f"system.load.{key}"] in (float(la0[i]), float(la1[i]))  # the kernel updates it every 5 s
    assert up0 <= v["system.uptime_seconds"] <= up1
    assert v["system.cpu.count"] == os.cpu_count()
    listed = sum(1 for e in os.listdir("/proc") if e.isdigit())
    assert abs(v["system.processes.count"] - listed) <= 20  # other tests start and stop processes meanwhile
    assert v["system.processes.threads"] >= v["system.processes.count"]
    assert v["system.processes.running"] >= 1  # this very process
    assert v["system.processes.blocked"] >= 0
    assert "system.processes.created_per_second" not in v  # a rate: not on the first run
    await check.close()


async def test_process_creation_rate_counts_our_forks() -> None:
    check = build_check({"type": "system", "process_count": False})
    await asyncio.sleep(1.05)  # the cpu and system checks share a /proc/stat read up to 1 s old: let it expire
    await check.run()
    t0 = time.monotonic()
    for _ in range(5):
        subprocess.run(["true"], check=True)
    await asyncio.sleep(0.2)
    out = await check.run()
    dt = time.monotonic() - t0
    v = {r.name: r.value for r in out if isinstance(r, Sample)}
    assert "system.processes.count" not in v
    # the check's interval began at most 1 s before t0 (a shared /proc/stat read) and ended before dt
    assert v["system.processes.created_per_second"] * (dt + 1.0) >= 5
    await check.close()


def test_process_counter_matches_a_listing_of_proc() -> None:
    pc = ProcessCounter(recheck=3)
    for _ in range(8):
        n = pc.count()
        listed = sum(1 for e in os.listdir("/proc") if e.isdigit())
        assert abs(n - listed) <= 10
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        before = pc.count()
        children = [subprocess.Popen(["sleep", "30"]) for _ in range(20)]
        try:
            assert pc.count() - before >= 15  # nlink shortcut or listing, new processes are counted
        finally:
            for c in children:
                c.kill()
                c.wait()
    finally:
        child.kill()
        child.wait()


async def run_twice(type_name: str, **opts: object) -> list[Sample]:
    check = build_check({"type": type_name, **opts})
    await check.run()
    await asyncio.sleep(1.05)
    out = await check.run()
    await check.close()
    return out  # type: ignore[return-value]


async def run_all_twice() -> dict[str, list[Sample]]:
    results = await asyncio.gather(*(run_twice(t) for t in SYSTEM_TYPES))
    return dict(zip(SYSTEM_TYPES, results))


async def test_every_emitted_metric_is_catalogued_with_its_tags() -> None:
    catalogue = all_metrics()
    for t, out in (await run_all_twice()).items():
        cls = load_check_class(t)
        declared = {m.name: m for m in cls.METRICS}
        assert set(declared) <= set(catalogue)
        assert out, t
        for r in out:
            assert isinstance(r, Sample), (t, r)
            spec = declared.get(r.name)
            assert spec is not None, f"{t} emitted {r.name}, which is not in {cls.__name__}.METRICS"
            assert set(r.tags) == set(spec.tags), (r.name, r.tags, spec.tags)
            decode_sample(r.to_json(), r.name)  # valid on the wire (finite value, tag rules)


async def test_the_fixed_metric_names_of_issue_2_are_emitted() -> None:
    got: dict[str, list[Sample]] = {}
    for out in (await run_all_twice()).values():
        for r in out:
            got.setdefault(r.name, []).append(r)
    assert any(s.tags == {"cpu": "total"} for s in got["system.cpu.usage_percent"])
    assert any(s.tags == {"cpu": "0"} for s in got["system.cpu.usage_percent"])
    assert got["system.memory.total_bytes"] and got["system.memory.available_bytes"]
    assert any(s.tags["mountpoint"] == "/" for s in got["system.filesystem.total_bytes"])
    assert all("mountpoint" in s.tags for s in got["system.filesystem.used_percent"])
    assert all("device" in s.tags for s in got["system.disk.write_bytes_per_second"])
    assert all("interface" in s.tags for s in got["system.network.rx_bytes_per_second"])
    assert got["system.load.1m"]


def test_default_checks_are_the_five_host_checks() -> None:
    assert [c["type"] for c in DEFAULT_CHECKS] == list(SYSTEM_TYPES)


def test_rates_first_call_none_backwards_none_never_negative() -> None:
    r = Rates()
    assert r.update("k", 1.0, (10, 20)) is None
    assert r.update("k", 3.0, (30, 20)) == [10.0, 0.0]
    assert r.update("k", 3.0, (40, 20)) is None  # time did not advance
    assert r.update("k", 4.0, (5, 25)) is None  # a counter went backwards: no rate this interval
    assert r.update("k", 5.0, (6, 26)) == [1.0, 1.0]  # the new values are the baseline
    rnd = random.Random(7)
    t, v = 0.0, [0, 0]
    for _ in range(2000):
        t += rnd.choice((0.0, 0.5, 10.0))
        v = [x + rnd.randint(-1000, 100_000) if rnd.random() > 0.05 else rnd.randint(0, 10) for x in v]
        res = r.update("fuzz", t, tuple(v))
        assert res is None or all(x >= 0 for x in res)
    r.prune()
    r.update("k", 6.0, (7, 27))
    r.prune()  # "fuzz" was not updated since the last prune: forgotten
    assert len(r) == 1


def test_glob_filter_include_exclude() -> None:
    f = GlobFilter(("eth*", "en*"), ("eth9",))
    assert f("eth0") and f("enp3s0") and not f("eth9") and not f("wlan0")
    assert GlobFilter((), ("lo", "veth*"))("eth0") and not GlobFilter((), ("lo", "veth*"))("veth1a2b")
    assert GlobFilter((), ())("anything")
    assert GlobFilter(("/srv/*",), ())("/srv/a/b")  # * also matches /
    assert not GlobFilter(("ETH*",), ())("eth0")  # case-sensitive
