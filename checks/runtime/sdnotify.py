"""systemd sd_notify over $NOTIFY_SOCKET (READY=1, WATCHDOG=1, STOPPING=1, STATUS=...) without libsystemd."""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send one notification; returns False when not run by systemd (no NOTIFY_SOCKET) or on error."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(state.encode())
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    """Half the WatchdogSec systemd gave us (seconds), or None when the watchdog is off."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6 / 2
    except ValueError:
        return None
