"""Real memcached fixture: a session server on a free loopback port (TCP only, 64 MiB)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Iterator

import pytest



@dataclass
class MemcachedServer:
    host: str
    port: int
    memory_mb: int
    proc: subprocess.Popen[bytes] = field(repr=False)

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_memcached(memory_mb: int = 64) -> MemcachedServer:
    from tests.servers.net import free_port, wait_port  # imported late: net is a plugin loaded after this one

    exe = shutil.which("memcached")
    if exe is None:
        pytest.fail("memcached not found: apt-get install memcached (listed in .ci/packages.d/probes.txt)")
    port = free_port()
    args = [exe, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", str(memory_mb), "-c", "256", "-t", "1"]
    if os.geteuid() == 0:
        args += ["-u", "memcache" if _user_exists("memcache") else "nobody"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    srv = MemcachedServer("127.0.0.1", port, memory_mb, proc)
    try:
        wait_port("127.0.0.1", port, timeout=15)
    except TimeoutError:
        srv.stop()
        pytest.fail(f"memcached did not start: {proc.stderr.read().decode(errors='replace') if proc.stderr else ''}")
    return srv


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[MemcachedServer]:
    """A session-wide memcached on 127.0.0.1:<free port> with 64 MiB."""
    srv = start_memcached()
    yield srv
    srv.stop()
