#!/usr/bin/env python3
"""Zabbix sink benchmark: values/s pushed into a real Zabbix 6.0 server, with its processed/failed counts.

Starts its own Zabbix stack (private PostgreSQL, zabbix_server, PHP API on loopback; the test
fixture's code in tests/servers/zabbix.py, Debian packages in .ci/packages.d/zabbix.txt), creates
one host with `--items` float trapper items through the API, then pushes agent-like batches
(1,000 samples each, one key per `check` tag value) through `ZabbixSink.send()` the way the
collector's sink runner does (several batches per call). Reported: wall-clock values/s, the
server's processed/failed totals as the sink counted them, the history rows Zabbix stored
(history.get countOutput), and the sink process's CPU seconds per million values.

    python3 bench/zabbix_sink.py [--values 400000] [--items 1000] [--batches-per-send 50] [--in-flight 4] [--chunk-size 1000]

Goal (issue 6): the sink sustains >= 40,000 values/s with nothing failed.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from checks.config import from_dict  # noqa: E402
from checks.model import Batch, Sample, new_batch_id  # noqa: E402
from collector.sinks.base import SinkContext  # noqa: E402
from collector.sinks.zabbix import ZabbixSink, ZabbixSinkConfig  # noqa: E402
from tests.servers.zabbix import FRONTEND_CONF, start_zabbix_stack, wait_until  # noqa: E402


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make_batches(host: str, n_values: int, n_items: int, t0: float) -> list[Batch]:
    out = []
    per = 1000
    for b in range(0, n_values, per):
        samples = []
        for i in range(b, min(b + per, n_values)):
            # distinct (item, clock, ns) for every value: Zabbix drops exact duplicates
            samples.append(Sample("bench.value", float(i % 997) + 0.5, t0 + i * 1e-4, {"check": f"c{i % n_items}"}))
        out.append(Batch(new_batch_id(), host, time.time(), samples))
    return out


async def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="infrawatch-zabbix-bench-"))
    saved = FRONTEND_CONF.read_bytes() if FRONTEND_CONF.is_file() else None
    t_start = time.monotonic()
    stack = start_zabbix_stack(workdir)
    print(f"zabbix stack up in {time.monotonic() - t_start:.1f}s (server 127.0.0.1:{stack.server_port})")
    try:
        api = stack.api()
        host = f"bench-{int(time.time())}"
        gid = api.hostgroup.create(name=host)["groupids"][0]
        hid = api.host.create(host=host, groups=[{"groupid": gid}])["hostids"][0]
        items = [{"hostid": hid, "name": f"bench c{i}", "key_": f"infrawatch.bench.value[c{i}]", "type": 2, "value_type": 0,
                  "history": "1d"} for i in range(args.items)]
        for i in range(0, len(items), 500):
            api.item.create(items[i:i + 500])
        cfg = from_dict(ZabbixSinkConfig, {"server": "127.0.0.1", "port": stack.server_port, "heartbeat": False,
                                           "in_flight": args.in_flight, "chunk_size": args.chunk_size, "hold": "0s",
                                           "compression": args.compression})
        sink = ZabbixSink(cfg, SinkContext(str(workdir / "sink")))
        await sink.start()
        # wait until the server's configuration cache knows the items
        probe = make_batches(host, 1, args.items, time.time() - 3600)
        await sink.send(probe)
        deadline = time.monotonic() + 30
        while sink.sent_total == 0:
            assert time.monotonic() < deadline, "server never accepted a value"
            await asyncio.sleep(0.5)
            await sink.send(make_batches(host, 1, args.items, time.time() - 3600 + time.monotonic() % 1))
        base_sent, base_failed = sink.sent_total, sink.failed_total
        batches = make_batches(host, args.values, args.items, time.time() - 1800)
        k = args.batches_per_send
        c0, t0 = cpu(), time.perf_counter()
        for i in range(0, len(batches), k):
            await sink.send(batches[i:i + k])
        wall = time.perf_counter() - t0
        used = cpu() - c0
        sent, failed = sink.sent_total - base_sent, sink.failed_total - base_failed
        await sink.close()
        print(f"pushed {args.values:,} values in {wall:.2f}s = {args.values / wall:,.0f} values/s "
              f"(chunk_size={args.chunk_size}, in_flight={args.in_flight}, batches/send={k}, compression={args.compression})")
        print(f"server answers: processed={sent:,} failed={failed:,}; sink CPU {used:.2f}s = {used / args.values * 1e6:.2f}s per million values")

        def stored() -> int:
            n = int(api.history.get(history=0, hostids=[hid], countOutput=True, time_from=int(time.time()) - 7200))
            return n if n >= sent + base_sent else 0

        try:
            n = wait_until(stored, timeout=120, interval=1, what="history rows")
            print(f"history rows stored: {n:,} (expected {sent + base_sent:,} including the warm-up values)")
        except TimeoutError as e:
            print(f"history rows: {e}")
    finally:
        stack.close()
        if saved is None:
            FRONTEND_CONF.unlink(missing_ok=True)
        else:
            FRONTEND_CONF.write_bytes(saved)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--values", type=int, default=400_000)
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--batches-per-send", type=int, default=50)  # the sink runner's max_batches_per_send
    p.add_argument("--in-flight", type=int, default=4)
    p.add_argument("--chunk-size", type=int, default=1000)
    p.add_argument("--compression", action="store_true")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
