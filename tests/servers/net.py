"""Loopback helpers for tests: free ports and waiting for a port to accept connections."""

from __future__ import annotations

import socket
import time

import pytest


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError as e:
            last = e
            time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not accept connections within {timeout}s: {last}")


@pytest.fixture
def unused_port() -> int:
    return free_port()
