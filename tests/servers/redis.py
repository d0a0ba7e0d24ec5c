"""Real redis-server fixtures: a session server with a password, and a factory for extra (TLS, replica, throwaway) servers."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.servers.net import free_port, wait_port

PASSWORD = "redis-test-pw"


@dataclass
class RedisServer:
    host: str
    port: int
    password: str | None
    dir: str
    proc: subprocess.Popen[bytes] = field(repr=False)
    tls: bool = False

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}{self.host}:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_redis(
    password: str | None = PASSWORD,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_ca: str | None = None,
    extra_args: tuple[str, ...] = (),
) -> RedisServer:
    """Start redis-server on a free loopback port in a temp dir (no persistence). With tls_*, the port speaks TLS only."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server not found: apt-get install redis-server (listed in .ci/packages.d/probes.txt)")
    d = tempfile.mkdtemp(prefix="iw-redis-")
    port = free_port()
    args = [exe, "--bind", "127.0.0.1", "--dir", d, "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--logfile", str(Path(d) / "redis.log"), "--protected-mode", "no"]
    if tls_cert:
        args += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", tls_cert, "--tls-key-file", tls_key or tls_cert,
                 "--tls-auth-clients", "no"]
        if tls_ca:
            args += ["--tls-ca-cert-file", tls_ca]
    else:
        args += ["--port", str(port)]
    if password:
        args += ["--requirepass", password]
    args += list(extra_args)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    srv = RedisServer("127.0.0.1", port, password, d, proc, tls=bool(tls_cert))
    try:
        wait_port("127.0.0.1", port, timeout=15)
    except TimeoutError:
        srv.stop()
        log = (Path(d) / "redis.log").read_text(errors="replace")[-2000:] if (Path(d) / "redis.log").exists() else ""
        pytest.fail(f"redis-server did not start: {proc.stderr.read().decode(errors='replace') if proc.stderr else ''} {log}")
    return srv


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A session-wide redis-server with password `PASSWORD` on 127.0.0.1:<free port>."""
    srv = start_redis()
    yield srv
    srv.stop()
    shutil.rmtree(srv.dir, ignore_errors=True)


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    """Start extra redis-servers (same arguments as `start_redis`); all are stopped at the test's end."""
    started: list[RedisServer] = []

    def make(*args: object, **kw: object) -> RedisServer:
        s = start_redis(*args, **kw)  # type: ignore[arg-type]
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()
        shutil.rmtree(s.dir, ignore_errors=True)
