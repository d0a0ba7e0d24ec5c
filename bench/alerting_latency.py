"""Benchmark: end-to-end latency from an exception raised in an instrumented app to the webhook receiving the alert.

    python bench/alerting_latency.py [--trials 20] [--ingest-interval 10] [--exception-flush 1] [--flush-interval 5] [--sdk-flush 1]

Real processes on loopback: a collector daemon (alerting on, a webhook receiver) and an agent with local ingest;
this process is the instrumented application (infrawatch_sdk) and the webhook receiver (aiohttp). Each trial raises
an exception in a fresh module `bench<N>` (rule: more than 0 exceptions in module=~bench.* → alert per module),
and measures raise → webhook POST received. The path: SDK queue (sdk flush) → agent local ingest aggregation
(local_ingest.exception_flush, the exceptions' fast lane) → agent shipper (exception events are urgent: ~0.2 s, not
ship.flush_interval) → collector ingest → on-arrival evaluation → webhook. Without options every setting is the
agent's and SDK's default; the figures printed name the settings used (`--exception-flush 0` shows the path without
the fast lane: aggregation interval + flush_interval).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not listening")


async def main_async(a: argparse.Namespace) -> None:
    import infrawatch_sdk as iw

    got: dict[str, float] = {}

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("status") == "firing":
            for al in body["alerts"]:
                got.setdefault(al["labels"].get("module", ""), time.time())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()

    tmp = Path(tempfile.mkdtemp(prefix="iw-bench-"))
    cport, iport = free_port(), free_port()
    token = "bench-agent-token"
    collector = {
        "listen": f"127.0.0.1:{cport}", "data_dir": str(tmp / "collector"), "agents": [{"name": "*", "token": token}],
        "self_metrics_interval": 0,
        "alerting": {
            "default_rules": False, "evaluation_interval": 10,
            "rules": [{"name": "bench_exceptions", "type": "exceptions", "match": {"module": "~bench.*"}, "by": ["module"],
                       "window": "10m", "warning": 0}],
            "receivers": [{"name": "hook", "notifiers": [{"type": "webhook", "url": f"http://127.0.0.1:{hook_port}/hook"}]}],
            "route": {"receiver": "hook", "group_by": ["alertname", "module"], "group_wait": 0, "group_interval": "1s"},
        },
    }
    agent = {
        "collector": {"url": f"http://127.0.0.1:{cport}", "token": token}, "host": "bench-host", "state_dir": str(tmp / "agent"),
        "local_ingest": {"listen": f"127.0.0.1:{iport}"},
        "checks": [],
    }
    if a.flush_interval is not None:
        agent["ship"] = {"flush_interval": a.flush_interval}
    if a.ingest_interval is not None:
        agent["local_ingest"]["interval"] = a.ingest_interval
    if a.exception_flush is not None:
        agent["local_ingest"]["exception_flush"] = a.exception_flush
    (tmp / "collector.yaml").write_text(yaml.safe_dump(collector))
    (tmp / "agent.yaml").write_text(yaml.safe_dump(agent))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen([sys.executable, "-m", "infrawatch", "collector", "-c", str(tmp / "collector.yaml")], env=env, cwd=ROOT,
                         stdout=open(tmp / "collector.log", "wb"), stderr=subprocess.STDOUT),
    ]
    try:
        await asyncio.to_thread(wait_port, cport)
        procs.append(subprocess.Popen([sys.executable, "-m", "infrawatch", "agent", "-c", str(tmp / "agent.yaml")], env=env, cwd=ROOT,
                                      stdout=open(tmp / "agent.log", "wb"), stderr=subprocess.STDOUT))
        await asyncio.to_thread(wait_port, iport)
        iw.init(f"http://127.0.0.1:{iport}", service="bench", **({"flush_interval": a.sdk_flush} if a.sdk_flush is not None else {}))
        lat: list[float] = []
        for i in range(a.trials):
            mod = f"bench{i}"
            t0 = time.time()
            try:
                raise RuntimeError(f"payment failed #{i}")
            except RuntimeError as e:
                iw.capture_exception(e, module=mod)
            async with asyncio.timeout(60):
                while mod not in got:
                    await asyncio.sleep(0.005)
            lat.append(got[mod] - t0)
            await asyncio.sleep(0.3)
        lat.sort()
        def val(v: float | None, default: str) -> str:
            return default if v is None else f"{v:g}s"

        print(f"settings: sdk flush {val(a.sdk_flush, '1s (default)')}, agent local_ingest.interval {val(a.ingest_interval, '10s (default)')}, "
              f"local_ingest.exception_flush {val(a.exception_flush, '1s (default)')}, ship.flush_interval {val(a.flush_interval, '5s (default)')}, "
              f"group_wait 0; {a.trials} trials")
        print(f"exception raised → webhook received: median {statistics.median(lat):.3f}s, p99 {lat[min(len(lat) - 1, int(len(lat) * 0.99))]:.3f}s, "
              f"min {lat[0]:.3f}s, max {lat[-1]:.3f}s")
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        await runner.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--ingest-interval", type=float, default=None, help="agent local_ingest.interval (default: the agent's, 10)")
    ap.add_argument("--exception-flush", type=float, default=None,
                    help="agent local_ingest.exception_flush (default: the agent's, 1; 0 = no fast lane)")
    ap.add_argument("--flush-interval", type=float, default=None, help="agent ship.flush_interval (default: the agent's, 5)")
    ap.add_argument("--sdk-flush", type=float, default=None, help="SDK flush_interval (default: the SDK's, 1)")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
