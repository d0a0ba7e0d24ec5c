#!/usr/bin/env python3
"""Agent overhead benchmark: CPU s/min and steady RSS of the infrawatch agent vs Prometheus node_exporter.

Runs side by side, in the same period: a receiver (not measured) — the real collector when it can be
imported, else a minimal stdlib HTTP stand-in that acknowledges batches — the agent with the default
system checks at a 10 s interval shipping to it, and node_exporter scraped every 10 s by a tiny
scraper (its CPU is reported separately, like Prometheus' own would be).

    python3 bench/agent_overhead.py [--minutes 3] [--interval 10] [--receiver auto|collector|stub]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def wait_http(url: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout}s")


# A minimal batch receiver (stdlib only): gunzips, counts samples, answers 200. Prints its sample count on exit.
STUB = r"""
import gzip, json, signal, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
n = [0, 0]
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        b = json.loads(body)
        n[0] += 1; n[1] += len(b.get("samples", ()))
        out = b'{"ok":true}'
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out))); self.end_headers(); self.wfile.write(out)
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
def bye(*_):
    print(f"batches={n[0]} samples={n[1]}", flush=True); sys.exit(0)
signal.signal(signal.SIGTERM, bye)
srv.serve_forever()
"""


def use_real_collector(choice: str) -> bool:
    if choice != "auto":
        return choice == "collector"
    try:
        import collector.app  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=25.0, help="seconds before measuring starts")
    ap.add_argument("--receiver", choices=("auto", "collector", "stub"), default="auto",
                    help="what the agent ships to: the real collector, or a stdlib stand-in (auto: collector if importable)")
    args = ap.parse_args()

    exe = [sys.executable, "-m", "infrawatch"]
    ne = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    tmp = Path(tempfile.mkdtemp(prefix="iw-bench-"))
    cport, nport = free_port(), free_port()
    token = "bench-token"
    (tmp / "collector.yaml").write_text(
        f"listen: 127.0.0.1:{cport}\ndata_dir: {tmp}/collector\nagents:\n  - name: '*'\n    token: {token}\n"
    )
    (tmp / "agent.yaml").write_text(
        f"collector:\n  url: http://127.0.0.1:{cport}\n  token: {token}\nstate_dir: {tmp}/agent\n"
        f"checks:\n" + "".join(f"  - type: {t}\n    interval: {args.interval}\n" for t in ("cpu", "memory", "disk", "network", "system"))
    )
    procs: list[subprocess.Popen] = []
    try:
        real = use_real_collector(args.receiver)
        if real:
            col = subprocess.Popen([*exe, "collector", "-c", str(tmp / "collector.yaml")], stdout=subprocess.DEVNULL, stderr=open(tmp / "collector.log", "w"))
        else:
            col = subprocess.Popen([sys.executable, "-c", STUB, str(cport)], stdout=open(tmp / "stub.out", "w"), stderr=open(tmp / "collector.log", "w"))
        procs.append(col)
        wait_http(f"http://127.0.0.1:{cport}/healthz")
        agent = subprocess.Popen([*exe, "agent", "-c", str(tmp / "agent.yaml")], stdout=subprocess.DEVNULL, stderr=open(tmp / "agent.log", "w"))
        procs.append(agent)
        node = None
        if ne:
            node = subprocess.Popen(
                [ne, f"--web.listen-address=127.0.0.1:{nport}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            procs.append(node)
            wait_http(f"http://127.0.0.1:{nport}/metrics")
        else:
            print("node_exporter not found (apt-get install prometheus-node-exporter): measuring the agent alone")

        stop = threading.Event()
        scraper_cpu = [0.0]

        def scrape() -> None:
            t0 = time.process_time()
            while not stop.wait(args.interval):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{nport}/metrics", timeout=5).read()
                except OSError:
                    pass
            scraper_cpu[0] = time.process_time() - t0

        th = threading.Thread(target=scrape, daemon=True)
        if node:
            th.start()
        time.sleep(args.warmup)
        a0 = cpu_seconds(agent.pid)
        n0 = cpu_seconds(node.pid) if node else 0.0
        t0 = time.monotonic()
        rss_a: list[float] = []
        rss_n: list[float] = []
        end = t0 + args.minutes * 60
        while time.monotonic() < end:
            time.sleep(5)
            if agent.poll() is not None:
                raise SystemExit(f"agent exited with {agent.returncode}; see {tmp}/agent.log")
            rss_a.append(rss_mib(agent.pid))
            if node:
                rss_n.append(rss_mib(node.pid))
        minutes = (time.monotonic() - t0) / 60
        a1 = cpu_seconds(agent.pid)
        n1 = cpu_seconds(node.pid) if node else 0.0
        stop.set()
        print(f"measured over {minutes:.2f} min, checks every {args.interval:g} s, shipping to the "
              + ("real collector" if real else "stdlib stand-in receiver"))
        print(f"{'process':<28}{'CPU s/min':>12}{'RSS MiB (steady max)':>24}")
        print(f"{'infrawatch agent':<28}{(a1 - a0) / minutes:>12.3f}{max(rss_a):>24.1f}")
        print(f"{'  (agent RSS median)':<28}{'':>12}{sorted(rss_a)[len(rss_a) // 2]:>24.1f}")
        if node:
            th.join(timeout=args.interval + 5)
            print(f"{'node_exporter':<28}{(n1 - n0) / minutes:>12.3f}{max(rss_n):>24.1f}")
            print(f"{'  its scraper (python)':<28}{scraper_cpu[0] / (minutes + args.warmup / 60):>12.3f}{'':>24}")
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        stub_out = tmp / "stub.out"
        if stub_out.exists() and stub_out.read_text().strip():
            print(f"receiver got: {stub_out.read_text().strip()}")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
