"""The collector as a real process: serve, back up while ingesting (CLI), clean SIGTERM stop, restart keeps data."""

from __future__ import annotations

import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from checks.model import encode_batch
from tests.collector.conftest import make_batch
from tests.servers.net import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "daemon-token-123"


def _start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.Popen([sys.executable, "-m", "infrawatch", "collector", "-c", str(cfg)], env=env, cwd=ROOT,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def _wait(url: str, p: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(300):
        assert p.poll() is None, log.read_text()
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).read()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(log.read_text())


def _post(url: str, body: bytes) -> int:
    req = urllib.request.Request(f"{url}/api/v1/batches", data=gzip.compress(body),
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def test_daemon_backup_while_ingesting_sigterm_and_restart(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(f"listen: 127.0.0.1:{port}\ndata_dir: {tmp_path}/data\nshared_token: {TOKEN}\nread_tokens: [read-token-123]\n")
    log = tmp_path / "collector.log"
    p = _start(cfg, log)
    try:
        _wait(url, p, log)
        acked: list[str] = []
        stop = threading.Event()

        def pump(k: int) -> None:
            i = 0
            while not stop.is_set():
                b = make_batch(f"host{k}", 100, tags={"i": str(i)})
                if _post(url, encode_batch(b)) == 200:
                    acked.append(b.batch_id)
                i += 1

        threads = [threading.Thread(target=pump, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        while len(acked) < 10:
            time.sleep(0.02)
        before = set(acked)
        r = subprocess.run([sys.executable, "-m", "infrawatch", "collector", "-c", str(cfg), "backup", str(tmp_path)],
                           env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT, capture_output=True, text=True, timeout=60)
        stop.set()
        for t in threads:
            t.join()
        assert r.returncode == 0, r.stderr
        copy = r.stdout.strip().rsplit(" ", 1)[-1]
        db = sqlite3.connect(copy)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        have = {x[0] for x in db.execute("SELECT batch_id FROM batches")}
        assert before <= have
        assert db.execute("SELECT count(*) FROM points").fetchone()[0] == 100 * len(have)
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
        # restart: every acknowledged batch is there
        p = _start(cfg, log)
        _wait(url, p, log)
        q = urllib.request.Request(f"{url}/api/v1/query?metric=test.value&start=-1h&agg=count&step=86400",
                                   headers={"Authorization": "Bearer read-token-123"})
        res = json.loads(urllib.request.urlopen(q, timeout=10).read())
        assert sum(pt[1] for s in res["series"] for pt in s["points"]) == 100 * len(acked)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(30)


def test_daemon_exits_1_when_the_port_is_taken(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = tmp_path / "collector.yaml"
        cfg.write_text(f"listen: 127.0.0.1:{port}\ndata_dir: {tmp_path}/data\n")
        log = tmp_path / "log"
        p = _start(cfg, log)
        assert p.wait(30) == 1
        assert "cannot run" in log.read_text()
