"""A real nginx for tests: temp prefix, random loopback port, stub_status, access logs (text with $request_time, and JSON).

`nginx_session` is one nginx for the whole session (stub_status tests); `nginx_server` starts one per
test (cheap, ~50 ms, and access-log tests rotate its logs). `/slow?ms=N` is proxied to a small Python
upstream on loopback that answers after N ms, so $request_time and $upstream_response_time are real.
Fails, never skips, when the nginx binary is missing (Debian package `nginx`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from tests.servers.net import free_port, wait_port

#: the log format the tests use: nginx's "combined" plus $request_time and $upstream_response_time
TIMED_FORMAT = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent" $request_time $upstream_response_time'
)

CONF = """
{user}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    log_format timed '{fmt}';
    log_format jsonl escape=json '{json}';
    access_log {log} timed;
    access_log {json_log} jsonl;
    server {{
        listen 127.0.0.1:{port};
        location = /nginx_status {{ stub_status; access_log off; }}
        location = /not_status {{ return 200 "hello\\n"; access_log off; }}
        location /ok {{ return 200 "ok\\n"; }}
        location /api/ {{ return 200 "{{\\"ok\\":true}}\\n"; }}
        location /err {{ return 500; }}
        location /moved {{ return 301 /ok; }}
        location /big {{ return 200 "{big}"; }}
        location /slow {{ proxy_pass http://127.0.0.1:{upstream}; }}
        {extra}
    }}
}}
"""


#: the same fields as JSON lines (nginx `escape=json`)
JSON_FORMAT = (
    '{"time":"$time_iso8601","remote_addr":"$remote_addr","request":"$request","request_uri":"$request_uri",'
    '"status":$status,"body_bytes_sent":$body_bytes_sent,"request_time":$request_time,'
    '"upstream_response_time":"$upstream_response_time"}'
)


class _SlowHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        from urllib.parse import parse_qs, urlsplit

        q = parse_qs(urlsplit(self.path).query)
        time.sleep(int(q.get("ms", ["0"])[0]) / 1000)
        status = int(q.get("status", ["200"])[0])
        body = b"slow\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a: object) -> None:
        pass


class Upstream:
    """A threaded HTTP server on loopback answering after ?ms= milliseconds with ?status=."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Nginx:
    """One nginx master (+1 worker) in the foreground, in its own temp prefix."""

    def __init__(self, base: Path, *, extra: str = "", port: int | None = None) -> None:
        binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
        if binary is None:
            pytest.fail("nginx is not installed: apt-get install nginx")
        self.dir = base
        (base / "tmp").mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log = base / "access.log"
        self.json_log = base / "access.json.log"
        self.conf = base / "nginx.conf"
        self.upstream = Upstream()
        self.conf.write_text(
            CONF.format(
                dir=base, fmt=TIMED_FORMAT, json=JSON_FORMAT, log=self.log, json_log=self.json_log,
                port=self.port, extra=extra, big="x" * 1000, upstream=self.upstream.port,
                # as root the workers would run as `nobody`, which cannot reopen logs in a root-only temp dir
                user="user root root;" if os.geteuid() == 0 else "",
            )
        )
        self.proc = subprocess.Popen(
            [binary, "-p", str(base), "-c", str(self.conf), "-e", str(base / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_port("127.0.0.1", self.port, timeout=15)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"nginx did not start: {(base / 'error.log').read_text() if (base / 'error.log').exists() else ''}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reopen_logs(self) -> None:
        """`nginx -s reopen`: SIGUSR1 to the master, which reopens the logs and tells its worker to."""
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not (self.log.exists() and self.json_log.exists()):
            if time.monotonic() > deadline:
                raise TimeoutError("nginx did not reopen its access log")
            time.sleep(0.01)

    def get(self, path: str) -> int:
        """One GET on a fresh connection; returns the status (redirects are not followed)."""
        import http.client

        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            return r.status
        finally:
            c.close()

    def wait_logged(self, log: Path, lines: int, timeout: float = 10.0) -> None:
        """Until `log` holds at least `lines` complete lines (nginx writes a line after the response)."""
        deadline = time.monotonic() + timeout
        while True:
            n = log.read_bytes().count(b"\n") if log.exists() else 0
            if n >= lines:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{log} has {n} lines, expected {lines}")
            time.sleep(0.01)

    def stop(self) -> None:
        self.upstream.stop()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: flushes and closes the logs
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def nginx_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    srv = Nginx(tmp_path_factory.mktemp("nginx"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def nginx_server(tmp_path: Path) -> Iterator[Nginx]:
    srv = Nginx(tmp_path / "nginx")
    try:
        yield srv
    finally:
        srv.stop()
