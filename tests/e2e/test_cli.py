"""CLI: `config validate` on every shipped config and on broken files; `check` prints readings as JSON lines."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(
    p for p in (ROOT / "config").rglob("*.yaml")
    if "grafana" not in p.parts and "zabbix" not in p.parts and "systemd" not in p.parts
)


def iw(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("infrawatch")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "infrawatch", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_validates(path: Path) -> None:
    r = iw("config", "validate", str(path))
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "text, needles",
    [
        ("checks:\n  - type: cpu\n    intervall: 10\n", ["bad.yaml:3", "checks[0].intervall", "unknown key"]),
        ("checks:\n  - type: pingg\n", ["bad.yaml:2", "checks[0].type", "unknown check type", "known types"]),
        ("checks:\n  - type: cpu\n    interval: fast\n", ["bad.yaml:3", "checks[0].interval", "duration"]),
        ("collector:\n  url: [http://x\nchecks: []\n", ["bad.yaml:", "YAML syntax error"]),
        ("checks:\n  - type: cpu\n    interval: 10\n    enabled: maybe\n", ["bad.yaml:4", "checks[0].enabled"]),
    ],
)
def test_invalid_agent_config_names_file_key_line(tmp_path: Path, text: str, needles: list[str]) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    r = iw("config", "validate", str(f))
    assert r.returncode == 2
    for n in needles:
        assert n in r.stderr, (n, r.stderr)


def test_invalid_collector_config(tmp_path: Path) -> None:
    f = tmp_path / "collector.yaml"
    f.write_text("listen: 127.0.0.1:9310\nstore:\n  retention_raw: forever\n")
    r = iw("config", "validate", str(f))
    assert r.returncode == 2 and "collector.yaml:3" in r.stderr and "store.retention_raw" in r.stderr


def test_daemon_refuses_bad_config(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text("checks:\n  - type: memory\n    bogus: 1\n")
    r = iw("agent", "-c", str(f))
    assert r.returncode == 2 and "agent.yaml:3" in r.stderr and "bogus" in r.stderr
    r = iw("agent", "-c", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "missing.yaml" in r.stderr


def test_check_command_prints_json_lines(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text(f"state_dir: {tmp_path}/state\nchecks:\n  - type: memory\n  - type: system\n")
    r = iw("check", str(f))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    names = {row["name"] for row in rows if row["reading"] == "sample"}
    assert {"system.memory.total_bytes", "system.load.1m"} <= names
    assert all(row["tags"].get("host") for row in rows)


def test_check_command_reports_failing_probe(tmp_path: Path) -> None:
    from tests.servers.net import free_port

    f = tmp_path / "agent.yaml"
    f.write_text(f"state_dir: {tmp_path}/state\nchecks:\n  - type: tcp\n    target: 127.0.0.1:{free_port()}\n    timeout: 2s\n")
    r = iw("check", str(f))
    assert r.returncode == 1
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert any(row["reading"] == "event" and row["kind"] == "probe.failure" for row in rows)
    assert any(row.get("name") == "tcp.up" and row["value"] == 0 for row in rows)
