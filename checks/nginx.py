"""The nginx check: scrapes stub_status — connections by state, accepted/handled/request totals and their rates."""

from __future__ import annotations

import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from checks.base import BAD_STATUS, CONNECTION_FAILED, DNS_ERROR, MISMATCH, TIMEOUT, TLS_ERROR, CheckConfig, Probe, ProbeResult, probe_metrics
from checks.catalogue import MetricSpec
from checks.model import Sample

_STUB = re.compile(
    rb"Active connections:\s*(\d+)\s+server accepts handled requests\s+(\d+)\s+(\d+)\s+(\d+)\s+"
    rb"Reading:\s*(\d+)\s+Writing:\s*(\d+)\s+Waiting:\s*(\d+)"
)
MAX_BODY = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class NginxConfig(CheckConfig):
    #: URL of the stub_status location, e.g. http://127.0.0.1/nginx_status
    target: str
    #: extra request headers
    headers: dict[str, str] = field(default_factory=dict)
    #: HTTP basic auth (both or neither)
    username: str | None = None
    password: str | None = None
    #: verify the server certificate for https targets
    tls_verify: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        u = urlsplit(self.target)
        if u.scheme not in ("http", "https") or not u.hostname:
            from checks.config import ConfigError

            raise ConfigError("target", f"must be an http:// or https:// URL of the stub_status page, got {self.target!r}")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: set both or neither")


def parse_stub_status(body: bytes) -> dict[str, int] | None:
    """The numbers of a stub_status page, or None when `body` is not one."""
    m = _STUB.search(body)
    if m is None:
        return None
    keys = ("active", "accepted", "handled", "requests", "reading", "writing", "waiting")
    return dict(zip(keys, (int(x) for x in m.groups())))


def _client_error(e: BaseException) -> tuple[str, str]:
    """(result, reason) for an aiohttp/socket failure."""
    if isinstance(e, aiohttp.ClientConnectorCertificateError):
        return TLS_ERROR, f"certificate verification failed: {e.certificate_error}"
    if isinstance(e, (aiohttp.ClientSSLError, ssl.SSLError)):
        return TLS_ERROR, f"TLS error: {e}"
    if isinstance(e, aiohttp.ClientConnectorError):
        os_err = e.os_error
        if isinstance(os_err, socket.gaierror):
            return DNS_ERROR, f"cannot resolve {e.host}: {os_err.strerror or os_err}"
        return CONNECTION_FAILED, f"cannot connect to {e.host}:{e.port}: {os_err.strerror or os_err}"
    if isinstance(e, (TimeoutError, aiohttp.ServerTimeoutError)):
        return TIMEOUT, "no complete answer in time"
    return CONNECTION_FAILED, f"{type(e).__name__}: {e}"


class NginxCheck(Probe[NginxConfig]):
    """One stub_status page per check; rates are computed from the previous scrape (none after a counter reset)."""

    Config = NginxConfig
    _T = ("target",)
    METRICS = (
        *probe_metrics("nginx", "stub_status page"),
        MetricSpec("nginx.connections_active", "count", "gauge", "open client connections, including idle ones", _T),
        MetricSpec("nginx.connections", "count", "gauge", "client connections by state: reading (request headers), writing (responding), waiting (idle keep-alive)", ("target", "state")),
        MetricSpec("nginx.connections_accepted_total", "count", "counter", "client connections accepted since nginx started", _T),
        MetricSpec("nginx.connections_handled_total", "count", "counter", "client connections handled since nginx started", _T),
        MetricSpec("nginx.connections_dropped_total", "count", "counter", "accepted but not handled (worker_connections or resource limits)", _T),
        MetricSpec("nginx.requests_total", "count", "counter", "client requests since nginx started", _T),
        MetricSpec("nginx.connections_accepted_per_second", "per_second", "rate", "connections accepted per second since the previous scrape", _T),
        MetricSpec("nginx.connections_handled_per_second", "per_second", "rate", "connections handled per second since the previous scrape", _T),
        MetricSpec("nginx.requests_per_second", "per_second", "rate", "requests per second since the previous scrape", _T),
    )

    def __init__(self, config: NginxConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        self._prev: tuple[float, dict[str, int]] | None = None

    async def probe(self) -> ProbeResult:
        cfg = self.config
        ts = time.time()
        auth = aiohttp.BasicAuth(cfg.username, cfg.password or "") if cfg.username is not None else None
        # finish (with result=timeout) before the scheduler's own deadline cancels the run
        timeout = aiohttp.ClientTimeout(total=cfg.effective_timeout * 0.9)
        connector = aiohttp.TCPConnector(force_close=True, ssl=None if cfg.tls_verify else False)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=cfg.headers, auth=auth) as session:
                async with session.get(cfg.target, allow_redirects=False) as resp:
                    body = await resp.content.read(MAX_BODY)
                    status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            result, reason = _client_error(e)
            return ProbeResult(result, reason)
        t_now = time.monotonic()
        if status != 200:
            return ProbeResult(BAD_STATUS, f"HTTP status {status} (expected 200 from stub_status)", data={"status": status})
        st = parse_stub_status(body)
        if st is None:
            snippet = body[:80].decode("utf-8", "replace")
            return ProbeResult(MISMATCH, f"the response is not nginx stub_status output (starts with {snippet!r})")
        s = [
            Sample("nginx.connections_active", st["active"], ts),
            Sample("nginx.connections", st["reading"], ts, {"state": "reading"}),
            Sample("nginx.connections", st["writing"], ts, {"state": "writing"}),
            Sample("nginx.connections", st["waiting"], ts, {"state": "waiting"}),
            Sample("nginx.connections_accepted_total", st["accepted"], ts),
            Sample("nginx.connections_handled_total", st["handled"], ts),
            Sample("nginx.connections_dropped_total", st["accepted"] - st["handled"], ts),
            Sample("nginx.requests_total", st["requests"], ts),
        ]
        prev = self._prev
        self._prev = (t_now, st)
        if prev is not None:
            dt = t_now - prev[0]
            p = prev[1]
            if dt > 0 and all(st[k] >= p[k] for k in ("accepted", "handled", "requests")):  # else nginx restarted
                s.append(Sample("nginx.connections_accepted_per_second", (st["accepted"] - p["accepted"]) / dt, ts))
                s.append(Sample("nginx.connections_handled_per_second", (st["handled"] - p["handled"]) / dt, ts))
                s.append(Sample("nginx.requests_per_second", (st["requests"] - p["requests"]) / dt, ts))
        return ProbeResult(samples=s)
