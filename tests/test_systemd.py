"""The shipped systemd units pass `systemd-analyze verify` and carry the hardening the issue asks for."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "config" / "systemd"


@pytest.mark.parametrize("unit", ["infrawatch-agent.service", "infrawatch-collector.service"])
def test_unit_verifies(unit: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing (Debian package systemd; scripts/test.sh installs it)"
    exe = shutil.which("infrawatch")
    assert exe, "infrawatch console script not installed"
    text = (UNITS / unit).read_text()
    # verify the unit as shipped, with ExecStart pointing at this machine's installed command
    (tmp_path / unit).write_text(text.replace("/usr/local/bin/infrawatch", exe))
    r = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / unit)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout
    for needle in ("Type=notify", "Restart=on-failure", "User=infrawatch", "ProtectSystem=strict", "WatchdogSec=", "StateDirectory="):
        assert needle in text, f"{unit} lacks {needle}"
    if "agent" in unit:
        assert "AmbientCapabilities=CAP_NET_RAW" in text
