"""Helpers to run real collector and agent processes for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.servers.net import free_port

ROOT = Path(__file__).resolve().parents[2]

# Runs the CLI with the test-only `seq` check type registered (it lives in tests/, not in the product).
LAUNCH = (
    "import sys, checks; checks.CHECKS['seq'] = 'tests.e2e.seqcheck:SeqCheck'; "
    "from infrawatch.cli import main; sys.exit(main(sys.argv[1:]))"
)


class Proc:
    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name = name
        self.args = args
        self.log = log
        self.p: subprocess.Popen[bytes] | None = None

    def start(self) -> "Proc":
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        env.pop("NOTIFY_SOCKET", None)
        self.p = subprocess.Popen([sys.executable, "-c", LAUNCH, *self.args], cwd=ROOT, env=env,
                                  stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.p
        return self.p.pid

    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def kill9(self) -> None:
        if self.alive():
            assert self.p
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)

    def stop(self, timeout: float = 20) -> int | None:
        if self.p is None:
            return None
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        return self.p.returncode

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-5000:]
        except OSError:
            return ""


class Stack:
    """A collector and an agent as real subprocesses, with configs written to a temp dir."""

    def __init__(self, tmp: Path, checks: list[dict[str, Any]], interval: float = 1.0, collector_extra: str = "", agent_extra: str = "") -> None:
        self.tmp = tmp
        self.port = free_port()
        self.token = "e2e-agent-token"
        self.read_token = "e2e-read-token"
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = "e2e-host"
        (tmp / "collector.yaml").write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"data_dir: {tmp}/collector\n"
            f"agents:\n  - name: '*'\n    token: {self.token}\n"
            f"read_tokens: [{self.read_token}]\n" + collector_extra
        )
        lines = [
            "collector:",
            f"  url: {self.url}",
            f"  token: {self.token}",
            f"host: {self.host}",
            f"state_dir: {tmp}/agent",
            "ship:",
            "  flush_interval: 0.5s",
            "  backoff_initial: 0.2s",
            "  backoff_max: 1s",
            "checks:",
        ]
        for c in checks:
            c = {"interval": interval, **c}
            lines.append("  - " + json.dumps(c))
        (tmp / "agent.yaml").write_text("\n".join(lines) + "\n" + agent_extra)
        self.collector = Proc("collector", ["collector", "-c", str(tmp / "collector.yaml")], tmp / "collector.log")
        self.agent = Proc("agent", ["agent", "-c", str(tmp / "agent.yaml")], tmp / "agent.log")

    def start_collector(self) -> None:
        self.collector.start()
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.collector.alive():
                raise AssertionError(f"collector exited:\n{self.collector.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"collector not healthy within {timeout}s:\n{self.collector.output()}")

    def get(self, path: str, **params: Any) -> Any:
        q = urllib.parse.urlencode({k.replace("__", "."): v for k, v in params.items()})
        req = urllib.request.Request(f"{self.url}{path}?{q}", headers={"Authorization": f"Bearer {self.read_token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def query(self, metric: str, **params: Any) -> list[dict[str, Any]]:
        params.setdefault("start", time.time() - 3600)
        params.setdefault("end", time.time() + 60)
        out = self.get("/api/v1/query", metric=metric, **params)
        return out["series"] if isinstance(out, dict) and "series" in out else out

    def wait_for(self, fn: Any, timeout: float = 30, what: str = "condition") -> Any:
        end = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < end:
            try:
                last = fn()
                if last:
                    return last
            except (OSError, KeyError, ValueError, urllib.error.HTTPError) as e:
                last = e
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}; last={last!r}\nagent:\n{self.agent.output()}\ncollector:\n{self.collector.output()}")

    def close(self) -> None:
        self.agent.stop()
        self.collector.stop()
