"""Real PostgreSQL fixture: initdb + postgres (Debian's /usr/lib/postgresql/*/bin) as user postgres on a free loopback port."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

PG_USER = "postgres"
PG_PASSWORD = "pg-test-pw"


def pg_bin_dir() -> Path:
    """The newest Debian PostgreSQL bin dir (with initdb and postgres)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        pytest.fail("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: apt-get install postgresql "
                    "(listed in .ci/packages.d/probes.txt)")
    return Path(found[-1]).parent


def _owner() -> tuple[int, int, str | None]:
    """Run as `postgres` when we are root (postgres refuses to run as root)."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid(), None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root needs the `postgres` system user (created by the postgresql package)")
    return pw.pw_uid, pw.pw_gid, "postgres"


def _as(user: str | None, gid: int) -> dict[str, Any]:
    return {"user": user, "group": gid, "extra_groups": []} if user else {}


def start_postgres() -> dict[str, Any]:
    """initdb a temp cluster (scram-sha-256 auth, fsync off) and start it on 127.0.0.1:<free port>.

    Returns a dict: host, port, user, password, dbname, dsn, datadir, socket_dir, proc, and `stop`.
    """
    from tests.servers.net import free_port, wait_port

    bindir = pg_bin_dir()
    uid, gid, user = _owner()
    base = Path(tempfile.mkdtemp(prefix="iw-pg-"))
    os.chmod(base, 0o755)
    data = base / "data"
    pwfile = base / "pwfile"
    pwfile.write_text(PG_PASSWORD + "\n")
    os.chown(base, uid, gid)
    os.chown(pwfile, uid, gid)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": str(base)}
    init = subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=scram-sha-256", f"--pwfile={pwfile}",
         "-E", "UTF8", "--no-sync", "--no-instructions"],
        **_as(user, gid), env=env, capture_output=True, text=True, timeout=120, cwd=base,
    )
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"initdb failed: {init.stderr or init.stdout}")
    port = free_port()
    log = open(base / "postgres.log", "wb")
    proc = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(data), "-p", str(port),
         "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={base}",
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
         "-c", "max_connections=50", "-c", "shared_buffers=16MB", "-c", "logging_collector=off"],
        **_as(user, gid), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=base,
    )

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(2)  # SIGINT: fast shutdown
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()
        shutil.rmtree(base, ignore_errors=True)

    try:
        wait_port("127.0.0.1", port, timeout=30)
        _wait_ready(bindir, port, env)
    except (TimeoutError, RuntimeError) as e:
        text = (base / "postgres.log").read_text(errors="replace")[-2000:]
        stop()
        pytest.fail(f"postgres did not start: {e}\n{text}")
    return {
        "host": "127.0.0.1",
        "port": port,
        "user": PG_USER,
        "password": PG_PASSWORD,
        "dbname": "postgres",
        "dsn": f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{port}/postgres",
        "datadir": str(data),
        "socket_dir": str(base),
        "bindir": str(bindir),
        "proc": proc,
        "stop": stop,
    }


def _wait_ready(bindir: Path, port: int, env: dict[str, str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"], env=env)
        if r.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("pg_isready never reported ready")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[dict[str, Any]]:
    """A session-wide PostgreSQL on 127.0.0.1:<free port>; superuser `postgres` with a password (scram-sha-256)."""
    srv = start_postgres()
    yield srv
    srv["stop"]()
