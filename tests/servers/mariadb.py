"""Real MariaDB fixture: mariadb-install-db into a temp datadir, mariadbd as user mysql on a free loopback port."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

MY_USER = "infrawatch"
MY_PASSWORD = "my-test-pw"
MY_DATABASE = "probe"


def _exe(*names: str) -> str:
    for n in names:
        p = shutil.which(n) or (f"/usr/sbin/{n}" if os.path.exists(f"/usr/sbin/{n}") else None)
        if p:
            return p
    pytest.fail(f"{' / '.join(names)} not found: apt-get install mariadb-server (listed in .ci/packages.d/probes.txt)")


def start_mariadb() -> dict[str, Any]:
    """Initialise a temp datadir and start mariadbd on 127.0.0.1:<free port> (networking on, as user mysql).

    Creates user `infrawatch`@`%` with a password and database `probe`. Returns a dict: host, port, user,
    password, database, dsn, datadir, socket, root_user (unix-socket root, no password), proc, and `stop`.
    """
    from tests.servers.net import free_port, wait_port

    server = _exe("mariadbd", "mysqld")
    install = _exe("mariadb-install-db", "mysql_install_db")
    base = Path(tempfile.mkdtemp(prefix="iw-mariadb-"))
    os.chmod(base, 0o755)
    data = base / "data"
    sock = base / "mysqld.sock"
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("mysql")
        except KeyError:
            pytest.fail("running as root needs the `mysql` system user (created by the mariadb-server package)")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        run_as = ["--user=mysql"]
    init = subprocess.run(
        [install, "--no-defaults", f"--datadir={data}", *run_as, "--auth-root-authentication-method=normal",
         "--skip-test-db", "--skip-name-resolve"],
        capture_output=True, text=True, timeout=180, cwd=base,
    )
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"mariadb-install-db failed: {init.stderr or init.stdout}")
    port = free_port()
    proc = subprocess.Popen(
        [server, "--no-defaults", f"--datadir={data}", *run_as, f"--port={port}", "--bind-address=127.0.0.1",
         f"--socket={sock}", f"--pid-file={base / 'mysqld.pid'}", f"--log-error={base / 'error.log'}",
         "--skip-networking=0", "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=16M",
         "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--performance-schema=0",
         f"--tmpdir={base}", "--max-connections=50"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=base,
    )

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(base, ignore_errors=True)

    try:
        wait_port("127.0.0.1", port, timeout=60)
        _setup(sock)
    except Exception as e:
        text = (base / "error.log").read_text(errors="replace")[-2000:] if (base / "error.log").exists() else ""
        stop()
        pytest.fail(f"mariadbd did not start: {e}\n{text}")
    return {
        "host": "127.0.0.1",
        "port": port,
        "user": MY_USER,
        "password": MY_PASSWORD,
        "database": MY_DATABASE,
        "dsn": f"mysql://{MY_USER}:{MY_PASSWORD}@127.0.0.1:{port}/{MY_DATABASE}",
        "datadir": str(data),
        "socket": str(sock),
        "root_user": "root",
        "proc": proc,
        "stop": stop,
    }


def _setup(sock: Path, timeout: float = 30.0) -> None:
    import pymysql

    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = pymysql.connect(unix_socket=str(sock), user="root", password="", autocommit=True)
            break
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{MY_DATABASE}`")
        cur.execute(f"CREATE USER IF NOT EXISTS '{MY_USER}'@'%' IDENTIFIED BY '{MY_PASSWORD}'")
        cur.execute(f"GRANT ALL ON `{MY_DATABASE}`.* TO '{MY_USER}'@'%'")
    conn.close()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[dict[str, Any]]:
    """A session-wide MariaDB on 127.0.0.1:<free port> with user `infrawatch` (password) and database `probe`."""
    srv = start_mariadb()
    yield srv
    srv["stop"]()
