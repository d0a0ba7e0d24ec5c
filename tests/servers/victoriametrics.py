"""VictoriaMetrics for tests: Debian's `victoria-metrics` binary on a free loopback port, plus query helpers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.servers.net import free_port

VM_PACKAGE = "victoria-metrics"


def vm_binary() -> str:
    path = os.environ.get("INFRAWATCH_VM_BIN") or shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"VictoriaMetrics binary not found ({path}): install the Debian package `{VM_PACKAGE}` "
            "(listed in .ci/packages.d/influxdb.txt) or set INFRAWATCH_VM_BIN",
            pytrace=False,
        )
    return path


class VictoriaMetrics:
    """One VictoriaMetrics process; `stop()`/`start()` keep the data dir and the port (restart scenarios)."""

    def __init__(self, data_dir: str, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(data_dir) / "victoria-metrics.log"

    # ------------------------------------------------------------------ process

    def start(self, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        cmd = [
            vm_binary(),
            f"-storageDataPath={Path(self.data_dir) / 'storage'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=WARN",
        ]
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"victoria-metrics on port {self.port} not healthy within {timeout}s: {self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM flushes buffered data to disk), SIGKILL if it hangs."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # ------------------------------------------------------------------ HTTP helpers

    def _get(self, path: str, params: dict[str, Any] | list[tuple[str, Any]] | None = None, timeout: float = 30) -> bytes:
        q = "?" + urllib.parse.urlencode(params, doseq=True) if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{q}", timeout=timeout) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"VictoriaMetrics {path} answered {e.code}: {e.read()[:500]!r}") from None

    def force_flush(self) -> None:
        """Make everything written so far searchable (read-your-writes for tests)."""
        self._get("/internal/force_flush")

    def settle(self, match: str, points: int, timeout: float = 15.0) -> int:
        """Force-flush until `match` holds at least `points` points (returns how many it holds).

        VictoriaMetrics answers 204 before a row is searchable, and right after force_flush the last
        parts can still be invisible on a busy machine (measured: up to ~0.3 s): poll, never sleep blindly.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.force_flush()
            n = self.count_points(match)
            if n >= points or time.monotonic() > deadline:
                return n
            time.sleep(0.1)

    def write_lines(self, lines: str, precision: str = "ms") -> None:
        """Write raw line protocol (test setup only; the code under test uses the sink)."""
        req = urllib.request.Request(
            f"{self.url}/api/v2/write?org=test&bucket=test&precision={precision}", data=lines.encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status in (200, 204), r.status

    def export(self, match: str, start: float | None = None, end: float | None = None) -> list[dict[str, Any]]:
        """Raw samples: [{"metric": {...}, "values": [...], "timestamps": [ms, ...]}, ...]."""
        params: list[tuple[str, Any]] = [("match[]", match)]
        if start is not None:
            params.append(("start", f"{start:.3f}"))
        if end is not None:
            params.append(("end", f"{end:.3f}"))
        raw = self._get("/api/v1/export", params)
        out = []
        for line in raw.splitlines():
            if line.strip():
                s = json.loads(line)
                s["values"] = [float(v) for v in s["values"]]  # VM writes 1e300 as a 301-digit integer
                out.append(s)
        return out

    def _api(self, path: str, params: dict[str, Any] | list[tuple[str, Any]]) -> Any:
        doc = json.loads(self._get(path, params))
        if doc.get("status") != "success":
            raise AssertionError(f"VictoriaMetrics {path} {params}: {doc}")
        return doc["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; `at` defaults to 1 s in the past (never query the very present)."""
        at = time.time() - 1 if at is None else at
        data = self._api("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})
        return data["result"]

    def query_range(self, expr: str, start: float, end: float, step: float | str = 15) -> list[dict[str, Any]]:
        data = self._api("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step})
        return data["result"]

    def series(self, match: str, start: float | None = None, end: float | None = None) -> list[dict[str, str]]:
        params: list[tuple[str, Any]] = [("match[]", match)]
        if start is not None:
            params += [("start", f"{start:.3f}"), ("end", f"{(end or time.time()):.3f}")]
        return self._api("/api/v1/series", params)

    def label_values(self, label: str, match: str | None = None, start: float | None = None) -> list[str]:
        params: list[tuple[str, Any]] = [("match[]", match)] if match else []
        if start is not None:
            params.append(("start", f"{start:.3f}"))
        return self._api(f"/api/v1/label/{urllib.parse.quote(label)}/values", params)

    def count_points(self, match: str) -> int:
        return sum(len(s["values"]) for s in self.export(match))


@pytest.fixture(scope="session")
def victoriametrics() -> Iterator[VictoriaMetrics]:
    """A VictoriaMetrics shared by the whole session: use metric names or tags unique to your test."""
    with tempfile.TemporaryDirectory(prefix="iw-vm-") as d:
        vm = VictoriaMetrics(d)
        vm.start()
        try:
            yield vm
        finally:
            vm.stop()


@pytest.fixture
def victoriametrics_factory() -> Iterator[Any]:
    """Start private VictoriaMetrics instances (for tests that stop/restart it); all stopped at teardown."""
    started: list[VictoriaMetrics] = []
    dirs: list[tempfile.TemporaryDirectory[str]] = []

    def make() -> VictoriaMetrics:
        d = tempfile.TemporaryDirectory(prefix="iw-vm-")
        dirs.append(d)
        vm = VictoriaMetrics(d.name)
        vm.start()
        started.append(vm)
        return vm

    try:
        yield make
    finally:
        for vm in started:
            vm.stop()
        for d in dirs:
            d.cleanup()
