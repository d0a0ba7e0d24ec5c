"""`infrawatch up` with no config at all: a collector and a local agent in one process, serving the API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.servers.net import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_up_serves_host_metrics(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "infrawatch", "up", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "d"), "--interval", "1"],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = p.stdout.readline() if p.stdout else ""
        assert "infrawatch is up" in banner, banner
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        series: list = []
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{base}/api/v1/query?metric=system.memory.total_bytes&start=-10m", timeout=5) as r:
                out = json.loads(r.read())
            series = out["series"] if isinstance(out, dict) else out
            if series:
                break
            time.sleep(0.5)
        assert series and series[0]["points"], "no memory series from the local agent"
        assert series[0]["tags"]["host"]
        assert (tmp_path / "d" / "collector").is_dir() and (tmp_path / "d" / "agent").is_dir()
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
    assert p.returncode == 0
