"""A silent TCP listener for timeout tests: the kernel completes the handshake, nobody ever reads or answers."""

from __future__ import annotations

import socket
from typing import Iterator

import pytest


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts TCP connections (backlog) but never sends a byte: every probe times out."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(512)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()
