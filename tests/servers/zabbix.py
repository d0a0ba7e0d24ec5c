"""Session fixture: a real Zabbix 6.0 stack (private PostgreSQL, zabbix_server, PHP API) on loopback ports."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest

from tests.servers.net import free_port, wait_port

T = TypeVar("T")

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ZABBIX_SERVER = Path("/usr/sbin/zabbix_server")
FRONTEND = Path("/usr/share/zabbix")
SCHEMA_DIR = Path("/usr/share/zabbix-server-pgsql")
FRONTEND_CONF = Path("/etc/zabbix/zabbix.conf.php")
CACHE_DIR = Path(os.environ.get("INFRAWATCH_TEST_CACHE", Path(tempfile.gettempdir()) / "infrawatch-test-cache"))

PSK_IDENTITY = "infrawatch-test-psk"
PSK_HEX = "1f87b595725ac58dd977beef14b97461a7c1045b9a1c963065002c5473194952"

NEEDED = {
    "initdb/postgres/pg_restore (Debian package postgresql-15)": [PG_BIN / "initdb", PG_BIN / "postgres", PG_BIN / "pg_restore"],
    "zabbix_server (Debian package zabbix-server-pgsql)": [ZABBIX_SERVER, SCHEMA_DIR / "schema.sql.gz"],
    "the Zabbix frontend (Debian package zabbix-frontend-php)": [FRONTEND / "api_jsonrpc.php"],
    "php (Debian packages php-cli, php-pgsql)": [Path("/usr/bin/php")],
}


def wait_until(pred: Callable[[], T], timeout: float = 30.0, interval: float = 0.2, what: str = "condition") -> T:
    """Poll `pred` until it returns a truthy value; raise TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = pred()
        except Exception as e:  # noqa: BLE001 - polled call may fail until ready
            last = e
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s (last: {last!r})")
        time.sleep(interval)


def _stop_pid(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Stop a process we started (and its process group, which it leads since setsid) by PID."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass
    # zabbix_server's children exit with their parent; reap stragglers of its own group.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class ZabbixStack:
    """Handles to a running Zabbix stack; `api()` gives a logged-in synchronous ZabbixAPI."""

    workdir: Path
    pg_port: int
    server_port: int
    api_port: int
    ca_file: Path
    client_cert: Path
    client_key: Path
    psk_identity: str = PSK_IDENTITY
    psk_hex: str = PSK_HEX
    user: str = "Admin"
    password: str = "zabbix"
    server_proc: subprocess.Popen | None = None
    _procs: list[subprocess.Popen] = field(default_factory=list)
    _api: Any = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api_jsonrpc.php"

    @property
    def server_log(self) -> Path:
        return self.workdir / "zabbix_server.log"

    def api(self) -> Any:
        from zabbix_utils import ZabbixAPI

        if self._api is None:
            self._api = ZabbixAPI(url=self.api_url, user=self.user, password=self.password, timeout=60)
        return self._api

    # ------------------------------------------------------------ zabbix_server control

    def start_server(self) -> None:
        assert self.server_proc is None or self.server_proc.poll() is not None, "zabbix_server already running"
        (self.workdir / "zabbix_server.pid").unlink(missing_ok=True)
        self.server_proc = subprocess.Popen(
            [str(ZABBIX_SERVER), "-f", "-c", str(self.workdir / "zabbix_server.conf")],
            stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "zabbix_server.stdout", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_port("127.0.0.1", self.server_port, timeout=60)
        except TimeoutError:
            raise RuntimeError(f"zabbix_server did not listen; log tail:\n{self.log_tail()}") from None

    def stop_server(self) -> None:
        if self.server_proc is not None:
            _stop_pid(self.server_proc, signal.SIGTERM, timeout=30)
        # the port must be free before anything expects "connection refused"
        wait_until(lambda: not _port_open(self.server_port), timeout=20, what="zabbix_server port closed")

    def server_running(self) -> bool:
        return self.server_proc is not None and self.server_proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.server_log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        if self.server_proc is not None:  # first, and killed: its data is thrown away anyway
            _stop_pid(self.server_proc, signal.SIGKILL)
        for p in reversed(self._procs):
            _stop_pid(p, signal.SIGINT if p.args and "postgres" in str(p.args[0]) else signal.SIGTERM)


def free_low_port() -> int:
    """A free loopback port below 32768 (zabbix_server's ListenPort accepts 1024-32767 only)."""
    import random
    import socket

    for _ in range(200):
        port = random.randint(20000, 32767)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port in 20000-32767")


def _port_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _run(cmd: list[str], *, user: str | None = None, **kw: Any) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, user=user, capture_output=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}): {r.stderr[-2000:]!r}")
    return r


def _schema_cache_key() -> str:
    h = hashlib.sha256()
    for name in ("schema.sql.gz", "images.sql.gz", "data.sql.gz"):
        st = (SCHEMA_DIR / name).stat()
        h.update(f"{name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def _psql(pg_port: int, sockdir: Path, sql_gz: Path | None = None, sql: str | None = None, db: str = "zabbix") -> None:
    cmd = [str(PG_BIN / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-h", str(sockdir), "-p", str(pg_port), "-U", "postgres", "-d", db]
    if sql is not None:
        _run(cmd + ["-c", sql], user="postgres")
        return
    assert sql_gz is not None
    with gzip.open(sql_gz, "rb") as f:
        _run(cmd, user="postgres", input=f.read())


def _load_schema(pg_port: int, sockdir: Path, workdir: Path) -> None:
    """Restore the cached dump of a fresh schema import, creating the cache on first use."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(CACHE_DIR, 0o755)
    dump = CACHE_DIR / f"zabbix-pgsql-{_schema_cache_key()}.dump"
    _psql(pg_port, sockdir, sql="CREATE DATABASE zabbix ENCODING 'UTF8' TEMPLATE template0", db="postgres")
    restore = [str(PG_BIN / "pg_restore"), "-h", str(sockdir), "-p", str(pg_port), "-U", "postgres", "-d", "zabbix", "-j", "2"]
    if dump.is_file():
        try:
            _run(restore + [str(dump)], user="postgres")
            return
        except RuntimeError:
            dump.unlink(missing_ok=True)  # corrupt cache: rebuild below
            _psql(pg_port, sockdir, sql="DROP DATABASE zabbix", db="postgres")
            _psql(pg_port, sockdir, sql="CREATE DATABASE zabbix ENCODING 'UTF8' TEMPLATE template0", db="postgres")
    for name in ("schema.sql.gz", "images.sql.gz", "data.sql.gz"):
        _psql(pg_port, sockdir, SCHEMA_DIR / name)
    tmp = CACHE_DIR / f".{dump.name}.{os.getpid()}"
    with open(tmp, "wb") as out:
        r = subprocess.run(
            [str(PG_BIN / "pg_dump"), "-Fc", "-Z", "1", "-h", str(sockdir), "-p", str(pg_port), "-U", "postgres", "zabbix"],
            user="postgres", stdout=out, stderr=subprocess.PIPE,
        )
    if r.returncode == 0:
        os.replace(tmp, dump)
    else:
        tmp.unlink(missing_ok=True)


SERVER_CONF = """\
ListenIP=127.0.0.1
ListenPort={server_port}
DBHost=127.0.0.1
DBPort={pg_port}
DBName=zabbix
DBUser=postgres
LogFile={workdir}/zabbix_server.log
LogFileSize=0
PidFile={workdir}/zabbix_server.pid
SocketDir={workdir}
AllowRoot=1
CacheUpdateFrequency=1
HousekeepingFrequency=0
ProblemHousekeepingFrequency=3600
StartPollers=1
StartPollersUnreachable=1
StartPingers=0
StartDiscoverers=0
StartHTTPPollers=0
StartVMwareCollectors=0
StartJavaPollers=0
StartSNMPTrapper=0
StartProxyPollers=0
StartODBCPollers=0
StartReportWriters=0
StartAlerters=1
StartEscalators=1
StartTimers=1
StartHistoryPollers=1
StartTrappers=8
StartPreprocessors=3
StartDBSyncers=4
StartLLDProcessors=2
HistoryCacheSize=256M
HistoryIndexCacheSize=64M
ValueCacheSize=64M
TrendCacheSize=32M
CacheSize=128M
Timeout=10
TrapperTimeout=60
LogSlowQueries=0
TLSCAFile={ca}
TLSCertFile={cert}
TLSKeyFile={key}
"""

FRONTEND_CONF_TEXT = """<?php
// Written by infrawatch's test fixture (tests/servers/zabbix.py); restored at session end.
$DB['TYPE'] = 'POSTGRESQL';
$DB['SERVER'] = '127.0.0.1';
$DB['PORT'] = '{pg_port}';
$DB['DATABASE'] = 'zabbix';
$DB['USER'] = 'postgres';
$DB['PASSWORD'] = '';
$DB['SCHEMA'] = '';
$DB['ENCRYPTION'] = false;
$DB['KEY_FILE'] = '';
$DB['CERT_FILE'] = '';
$DB['CA_FILE'] = '';
$DB['VERIFY_HOST'] = false;
$DB['CIPHER_LIST'] = '';
$DB['VAULT_URL'] = '';
$DB['VAULT_DB_PATH'] = '';
$DB['VAULT_TOKEN'] = '';
$DB['DOUBLE_IEEE754'] = true;
$ZBX_SERVER = '127.0.0.1';
$ZBX_SERVER_PORT = '{server_port}';
$ZBX_SERVER_NAME = 'infrawatch-test';
$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;
"""


def _require_binaries() -> None:
    missing = [what for what, paths in NEEDED.items() if not all(p.exists() for p in paths)]
    if missing:
        pytest.fail(
            "Zabbix tests need: " + "; ".join(missing)
            + ". Install: apt-get install --no-install-recommends zabbix-server-pgsql zabbix-frontend-php php-pgsql php-cli postgresql",
            pytrace=False,
        )


def start_zabbix_stack(workdir: Path) -> ZabbixStack:
    """Start PostgreSQL, the Zabbix schema, zabbix_server and the PHP API in `workdir`."""
    import trustme

    _require_binaries()
    os.chmod(workdir, 0o755)
    pgdata, sockdir = workdir / "pgdata", workdir / "pgsock"
    for d in (pgdata, sockdir):
        d.mkdir()
        shutil.chown(d, "postgres", "postgres")
    pg_port, server_port, api_port = free_port(), free_low_port(), free_port()

    # RSA: Debian's zabbix_server uses GnuTLS with Zabbix's certificate cipher list, which has no ECDSA
    rsa = trustme.KeyType.RSA
    ca = trustme.CA(key_type=rsa)
    server_cert = ca.issue_cert("127.0.0.1", "localhost", key_type=rsa)
    client_cert = ca.issue_cert("infrawatch-collector", key_type=rsa)
    ca_file, cert_file, key_file = workdir / "ca.pem", workdir / "server.pem", workdir / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    server_cert.cert_chain_pems[0].write_to_path(str(cert_file))
    server_cert.private_key_pem.write_to_path(str(key_file))
    ccert, ckey = workdir / "client.pem", workdir / "client.key"
    client_cert.cert_chain_pems[0].write_to_path(str(ccert))
    client_cert.private_key_pem.write_to_path(str(ckey))

    stack = ZabbixStack(workdir, pg_port, server_port, api_port, ca_file, ccert, ckey)
    try:
        _run([str(PG_BIN / "initdb"), "-D", str(pgdata), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
             user="postgres")
        pg = subprocess.Popen(
            [str(PG_BIN / "postgres"), "-D", str(pgdata), "-p", str(pg_port), "-k", str(sockdir),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "shared_buffers=256MB"],
            user="postgres", stdin=subprocess.DEVNULL, stdout=open(workdir / "postgres.log", "ab"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        stack._procs.append(pg)
        wait_port("127.0.0.1", pg_port, timeout=30)
        # the port opens before recovery ends ("the database system is starting up")
        wait_until(lambda: subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", str(sockdir), "-p", str(pg_port)]).returncode == 0,
                   timeout=30, interval=0.1, what="PostgreSQL accepting connections")
        _load_schema(pg_port, sockdir, workdir)

        (workdir / "zabbix_server.conf").write_text(SERVER_CONF.format(
            server_port=server_port, pg_port=pg_port, workdir=workdir, ca=ca_file, cert=cert_file, key=key_file))
        stack.start_server()

        FRONTEND_CONF.parent.mkdir(parents=True, exist_ok=True)
        FRONTEND_CONF.write_text(FRONTEND_CONF_TEXT.format(pg_port=pg_port, server_port=server_port))
        php = subprocess.Popen(
            ["/usr/bin/php", "-d", "memory_limit=1G", "-d", "post_max_size=64M", "-d", "upload_max_filesize=64M",
             "-d", "max_execution_time=300", "-d", "max_input_time=300", "-d", "date.timezone=UTC",
             "-S", f"127.0.0.1:{api_port}", "-t", str(FRONTEND)],
            env={**os.environ, "PHP_CLI_SERVER_WORKERS": "4"}, stdin=subprocess.DEVNULL,
            stdout=open(workdir / "php.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        stack._procs.append(php)
        wait_port("127.0.0.1", api_port, timeout=30)

        def api_ready() -> bool:
            req = urllib.request.Request(
                stack.api_url, data=b'{"jsonrpc":"2.0","method":"apiinfo.version","params":{},"id":1}',
                headers={"Content-Type": "application/json-rpc"})
            with urllib.request.urlopen(req, timeout=10) as r:
                return b'"result"' in r.read()

        wait_until(api_ready, timeout=30, what="Zabbix API answering apiinfo.version")
        stack.api()
        return stack
    except BaseException:
        stack.close()
        raise


@pytest.fixture(scope="session")
def zabbix_stack() -> Iterator[ZabbixStack]:
    """A real Zabbix 6.0 server + API for the test session (fresh database, random loopback ports)."""
    # not under pytest's tmp dir: that is private to root (0700) and postgres must reach its data dir
    workdir = Path(tempfile.mkdtemp(prefix="infrawatch-zabbix-"))
    saved = FRONTEND_CONF.read_bytes() if FRONTEND_CONF.is_file() else None
    stack = start_zabbix_stack(workdir)
    try:
        yield stack
    finally:
        stack.close()
        if saved is None:
            FRONTEND_CONF.unlink(missing_ok=True)
        else:
            FRONTEND_CONF.write_bytes(saved)
        if os.environ.get("INFRAWATCH_KEEP_ZABBIX_DIR"):
            print(f"zabbix test dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
