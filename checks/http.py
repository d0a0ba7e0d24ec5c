"""HTTP probe (aiohttp): status, body and content checks, redirects, phase timings and TLS certificate expiry."""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextvars
import fnmatch
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp

try:  # aiohttp >= 3.10 connects through aiohappyeyeballs; older versions: no connect/TLS split
    import aiohappyeyeballs
except ImportError:  # pragma: no cover
    aiohappyeyeballs = None  # type: ignore[assignment]

from checks.base import (
    AUTH_FAILED,
    BAD_STATUS,
    CONNECTION_FAILED,
    DNS_ERROR,
    MISMATCH,
    TLS_ERROR,
    CheckConfig,
    Probe,
    ProbeResult,
    probe_metrics,
)
from checks.catalogue import MetricSpec
from checks.config import ByteSize
from checks.model import Sample
from checks.tcp import (
    ProbeFailure,
    TlsSettings,
    cert_days_left,
    failure_result,
    fetch_cert_unverified,
    os_error_text,
    peer_cert_der,
    probe_deadline,
    tls_reason,
    url_label,
)

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_STATUS_CLASS_RE = re.compile(r"^([1-5])xx$")
USER_AGENT = "infrawatch-probe/1.0"


def _status_set(spec: list[int | str]) -> frozenset[int]:
    """[200, "3xx"] → the accepted codes; empty → 200..299."""
    if not spec:
        return frozenset(range(200, 300))
    out: set[int] = set()
    for i, s in enumerate(spec):
        if isinstance(s, int):
            if not 100 <= s <= 599:
                raise ValueError(f"expected_status[{i}]: {s} is not an HTTP status code (100..599)")
            out.add(s)
            continue
        m = _STATUS_CLASS_RE.match(s.strip().lower())
        if not m:
            raise ValueError(f"expected_status[{i}]: {s!r} must be a status code like 204 or a class like \"2xx\"")
        base = int(m.group(1)) * 100
        out.update(range(base, base + 100))
    return frozenset(out)


@dataclass(frozen=True, kw_only=True)
class HttpConfig(TlsSettings, CheckConfig):
    #: the URL to request (http:// or https://); its host is resolved on every run
    target: str
    method: str = "GET"
    #: request headers
    headers: dict[str, str] = field(default_factory=dict)
    #: request body (sent as UTF-8)
    body: str | None = None
    #: HTTP basic auth
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: sent as `Authorization: Bearer <token>`
    bearer_token: str | None = field(default=None, repr=False)
    #: accepted status codes: integers and classes like "3xx"; empty means any 2xx
    expected_status: list[int | str] = field(default_factory=list)
    #: regular expressions the body must all match (→ mismatch)
    body_must_match: list[str] = field(default_factory=list)
    #: regular expressions the body must not match (→ mismatch)
    body_must_not_match: list[str] = field(default_factory=list)
    follow_redirects: bool = True
    max_redirects: int = 10
    #: glob the response's media type must match, e.g. "image/*" (→ mismatch)
    expect_content_type: str | None = None
    #: the body must be at least this big (→ mismatch)
    min_size: ByteSize | None = None
    #: bytes of the body kept for the body regexes (the rest is still read and counted)
    max_body_size: ByteSize = 1048576

    def __post_init__(self) -> None:
        super().__post_init__()
        u = urlsplit(self.target)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"target: expected an http:// or https:// URL, got {self.target!r}")
        try:
            u.port
        except ValueError as e:
            raise ValueError(f"target: {e}") from None
        if self.method.upper() not in METHODS:
            raise ValueError(f"method: must be one of {', '.join(METHODS)}; got {self.method!r}")
        _status_set(self.expected_status)
        for opt in ("body_must_match", "body_must_not_match"):
            for i, p in enumerate(getattr(self, opt)):
                try:
                    re.compile(p)
                except re.error as e:
                    raise ValueError(f"{opt}[{i}]: invalid regular expression {p!r}: {e}") from None
        if self.bearer_token and self.username:
            raise ValueError("use either username/password or bearer_token, not both")
        if self.password is not None and not self.username:
            raise ValueError("password needs username")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must not be negative")
        if self.max_body_size <= 0:
            raise ValueError("max_body_size must be greater than 0")
        self._check_tls_files()


@dataclass(slots=True)
class _Marks:
    """perf_counter() marks of one request (all redirect hops), filled by the trace hooks and the connector."""

    start: float = 0.0
    dns: float = 0.0
    dns_start: float = 0.0
    connect: float = 0.0
    tls: float = 0.0
    create_start: float = 0.0
    create_total: float = 0.0
    split: bool = False  # the connector measured connect and TLS separately
    headers_sent: float = 0.0
    cert_der: bytes | None = None
    peer: tuple[str, int] | None = None


_MARKS: contextvars.ContextVar[_Marks | None] = contextvars.ContextVar("infrawatch_http_marks", default=None)


class _TimedConnector(aiohttp.TCPConnector):
    """A TCPConnector that splits connection set-up into TCP connect and TLS handshake and keeps the peer cert.

    aiohttp's trace signals only cover connection creation as a whole; the split relies on the
    connector's `_wrap_create_connection` hook. If that hook changes shape, this falls back to the
    stock behaviour and the probe reports connect+TLS as one `connect` phase.
    """

    async def _wrap_create_connection(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        marks = _MARKS.get()
        addr_infos = kwargs.get("addr_infos")
        req = kwargs.get("req")
        timeout = kwargs.get("timeout")
        if marks is None or addr_infos is None or req is None or timeout is None or aiohappyeyeballs is None:
            return await super()._wrap_create_connection(*args, **kwargs)
        client_error = kwargs.pop("client_error", aiohttp.ClientConnectorError)
        for k in ("addr_infos", "req", "timeout"):
            kwargs.pop(k)
        if kwargs.get("ssl") and getattr(self, "_ssl_shutdown_timeout", None):
            kwargs["ssl_shutdown_timeout"] = self._ssl_shutdown_timeout
        try:
            async with asyncio.timeout(timeout.sock_connect):
                t0 = time.perf_counter()
                sock = await aiohappyeyeballs.start_connection(
                    addr_infos=addr_infos,
                    local_addr_infos=getattr(self, "_local_addr_infos", None),
                    happy_eyeballs_delay=getattr(self, "_happy_eyeballs_delay", None),
                    interleave=getattr(self, "_interleave", None),
                    loop=self._loop,
                    socket_factory=getattr(self, "_socket_factory", None),
                )
                t1 = time.perf_counter()
                try:
                    peer = sock.getpeername()
                    marks.peer = (str(peer[0]), int(peer[1]))
                except OSError:
                    pass
                transport, proto = await self._loop.create_connection(*args, **kwargs, sock=sock)
                t2 = time.perf_counter()
        except ssl.CertificateError as exc:
            raise aiohttp.ClientConnectorCertificateError(req.connection_key, exc) from exc
        except ssl.SSLError as exc:
            raise aiohttp.ClientConnectorSSLError(req.connection_key, exc) from exc
        except OSError as exc:
            if exc.errno is None and isinstance(exc, asyncio.TimeoutError):
                raise
            raise client_error(req.connection_key, exc) from exc
        marks.split = True
        if kwargs.get("ssl"):
            marks.connect += t1 - t0
            marks.tls += t2 - t1
            marks.cert_der = peer_cert_der(transport)
        else:
            marks.connect += t2 - t0
        return transport, proto


def _stamp(attr: str) -> Any:
    """A trace hook that sets the request's mark `attr` to now."""

    async def hook(_s: Any, ctx: Any, _p: Any) -> None:
        m = ctx.trace_request_ctx
        if isinstance(m, _Marks):
            setattr(m, attr, time.perf_counter())

    return hook


def _accumulate(attr: str, since: str) -> Any:
    """A trace hook that adds the time since the request's mark `since` to its mark `attr`."""

    async def hook(_s: Any, ctx: Any, _p: Any) -> None:
        m = ctx.trace_request_ctx
        if isinstance(m, _Marks):
            setattr(m, attr, getattr(m, attr) + (time.perf_counter() - getattr(m, since)))

    return hook


def _trace_config() -> aiohttp.TraceConfig:
    tc = aiohttp.TraceConfig()
    tc.on_dns_resolvehost_start.append(_stamp("dns_start"))
    tc.on_dns_resolvehost_end.append(_accumulate("dns", "dns_start"))
    tc.on_connection_create_start.append(_stamp("create_start"))
    tc.on_connection_create_end.append(_accumulate("create_total", "create_start"))
    tc.on_request_headers_sent.append(_stamp("headers_sent"))
    return tc


def _phase(name: str, value: float, ts: float) -> Sample:
    return Sample("http.phase_seconds", max(value, 0.0), ts, {"phase": name})


def basic_auth(username: str, password: str | None) -> str:
    """The Authorization header value of HTTP basic authentication."""
    return "Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode()


def probe_session(connector: aiohttp.BaseConnector, **options: Any) -> aiohttp.ClientSession:
    """An aiohttp session for a probe: no cookies kept between runs, no total timeout (the probe's deadline rules)."""
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
        **options,
    )


class SessionHolder:
    """Mixin for probes over HTTP (list it before Probe): one aiohttp session from `_new_session()`,
    made on first use and again after it closed, closed by `close()`."""

    _session: aiohttp.ClientSession | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        raise NotImplementedError

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._new_session()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpCheck(SessionHolder, Probe[HttpConfig]):
    """Request a URL and check status, body, content type and size; time each phase; report TLS expiry."""

    Config: ClassVar[type[CheckConfig]] = HttpConfig
    METRICS = probe_metrics("http", "HTTP endpoint") + (
        MetricSpec(
            "http.phase_seconds", "seconds", "gauge",
            "time spent per phase, summed over redirects: dns, connect, tls, processing (request sent → first byte), transfer (body)",
            ("target", "phase"),
        ),
        MetricSpec("http.first_byte_seconds", "seconds", "gauge", "time from the start of the probe to the final response's headers", ("target",)),
        MetricSpec("http.status_code", "code", "gauge", "HTTP status code of the final response", ("target",)),
        MetricSpec("http.response_size_bytes", "bytes", "gauge", "size of the (decoded) response body", ("target",)),
        MetricSpec("http.redirects", "count", "gauge", "redirects followed", ("target",)),
        MetricSpec("http.tls_cert_expiry_days", "days", "gauge", "days until the server certificate expires (negative: expired)", ("target",)),
        MetricSpec(
            "http.tls_chain_valid", "bool", "gauge",
            "https with tls_verify: 1 if the certificate chain and host name verified, 0 if verification failed",
            ("target",),
        ),
    )

    def __init__(self, config: HttpConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        c = config
        self._url = c.target
        self._method = c.method.upper()
        self._status_ok = _status_set(c.expected_status)
        self._must = [re.compile(p) for p in c.body_must_match]
        self._must_not = [re.compile(p) for p in c.body_must_not_match]
        self._ctype = c.expect_content_type.lower() if c.expect_content_type else None
        u = urlsplit(c.target)
        self._host = u.hostname or ""
        self._https = u.scheme == "https"
        self._port = u.port or (443 if self._https else 80)
        headers = {"User-Agent": USER_AGENT}
        headers.update(c.headers)
        if c.bearer_token:
            headers["Authorization"] = f"Bearer {c.bearer_token}"
        elif c.username:
            headers["Authorization"] = basic_auth(c.username, c.password)
        self._headers = headers
        self._has_credentials = any(k.lower() == "authorization" for k in headers)
        self._data = c.body.encode() if c.body is not None else None
        self._label = url_label(c.target)
        self._ssl: ssl.SSLContext | None = None

    def target_label(self) -> str:
        return self._label

    def _new_session(self) -> aiohttp.ClientSession:
        self._ssl = self.config.ssl_context()
        connector = _TimedConnector(use_dns_cache=False, force_close=True, ssl=self._ssl, limit=0)
        return probe_session(connector, trace_configs=[_trace_config()])

    async def probe(self) -> ProbeResult:
        c = self.config
        deadline = probe_deadline(c)
        res = ProbeResult()
        marks = _Marks()
        token = _MARKS.set(marks)
        phase = "connecting"
        chain_valid: bool | None = None
        status: int | None = None
        ts = time.time()
        t_start = time.perf_counter()
        try:
            async with asyncio.timeout(deadline):
                session = self._get_session()
                marks.start = time.perf_counter()
                phase = "waiting for the response"
                async with session.request(
                    self._method,
                    self._url,
                    headers=self._headers,
                    data=self._data,
                    allow_redirects=c.follow_redirects,
                    max_redirects=c.max_redirects,
                    server_hostname=c.tls_server_name,
                    trace_request_ctx=marks,
                ) as resp:
                    first_byte = time.perf_counter()
                    status = resp.status
                    if marks.cert_der is None and self._https and resp.connection is not None and resp.connection.transport:
                        marks.cert_der = peer_cert_der(resp.connection.transport)
                    phase = "reading the body"
                    body, size = await self._read_body(resp)
                    end = time.perf_counter()
                    res.samples += self._timing_samples(marks, first_byte, end, ts)
                    res.samples += [
                        Sample("http.status_code", float(status), ts),
                        Sample("http.response_size_bytes", float(size), ts),
                        Sample("http.redirects", float(len(resp.history)), ts),
                    ]
                    self._verdict(res, resp, body, size)
        except (TimeoutError, ProbeFailure) as e:
            res.result, res.reason = failure_result(e, deadline, phase)
        except aiohttp.TooManyRedirects:
            res.result, res.reason = BAD_STATUS, f"more than {c.max_redirects} redirects"
        except aiohttp.ClientError as e:
            res.result, res.reason = client_error_result(e, self._host, phase)
            if isinstance(e, aiohttp.ClientConnectorCertificateError):
                chain_valid = False
                await self._cert_after_failure(marks, deadline - (time.perf_counter() - t_start))
        finally:
            _MARKS.reset(token)
        if marks.cert_der is not None:
            days = cert_days_left(marks.cert_der)
            if days is not None:
                res.samples.append(Sample("http.tls_cert_expiry_days", days, ts))
            if chain_valid is None and c.tls_verify:
                chain_valid = True  # the handshake that produced this certificate verified it
        if chain_valid is not None:
            res.samples.append(Sample("http.tls_chain_valid", 1.0 if chain_valid else 0.0, ts))
        if status is not None:
            res.data["status"] = status
        return res

    async def _cert_after_failure(self, marks: _Marks, remaining: float) -> None:
        """After a failed verification, still report the certificate's expiry (an expired one fails it too)."""
        if remaining < 0.05:
            return
        host, port = marks.peer if marks.peer else (self._host, self._port)
        try:
            async with asyncio.timeout(remaining):
                marks.cert_der = await fetch_cert_unverified(host, port, self.config.tls_server_name or self._host)
        except TimeoutError:
            pass

    async def _read_body(self, resp: aiohttp.ClientResponse) -> tuple[bytes, int]:
        keep = self.config.max_body_size if (self._must or self._must_not) else 0
        parts: list[bytes] = []
        kept = 0
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if kept < keep:
                piece = chunk[: keep - kept]
                parts.append(piece)
                kept += len(piece)
        return b"".join(parts), size

    def _timing_samples(self, m: _Marks, first_byte: float, end: float, ts: float) -> list[Sample]:
        if m.split:
            connect, tls = m.connect, m.tls
        else:
            connect, tls = m.create_total - m.dns, 0.0
        out = [_phase("dns", m.dns, ts), _phase("connect", connect, ts)]
        if self._https or m.tls > 0:
            out.append(_phase("tls", tls, ts))
        out += [
            _phase("processing", first_byte - (m.headers_sent or m.start), ts),
            _phase("transfer", end - first_byte, ts),
            Sample("http.first_byte_seconds", first_byte - m.start, ts),
        ]
        return out

    def _verdict(self, res: ProbeResult, resp: aiohttp.ClientResponse, body: bytes, size: int) -> None:
        c = self.config
        if resp.status not in self._status_ok:
            want = ", ".join(str(s) for s in c.expected_status) if c.expected_status else "2xx"
            res.result, res.reason = BAD_STATUS, f"status {resp.status} {resp.reason or ''}".rstrip() + f", expected {want}"
            if resp.status in (401, 403):
                res.result = AUTH_FAILED
                res.reason += " (credentials rejected)" if self._has_credentials else " (no credentials configured)"
            return
        if self._ctype is not None:
            ctype = (resp.content_type or "").lower()
            if not fnmatch.fnmatchcase(ctype, self._ctype):
                res.result, res.reason = MISMATCH, f"content type {ctype!r} does not match {c.expect_content_type!r}"
                return
        if c.min_size is not None and size < c.min_size:
            res.result, res.reason = MISMATCH, f"body is {size} bytes, expected at least {c.min_size}"
            return
        if self._must or self._must_not:
            text = body.decode(_charset(resp), errors="replace")
            for rx in self._must:
                if not rx.search(text):
                    res.result, res.reason = MISMATCH, f"body does not match {rx.pattern!r}"
                    return
            for rx in self._must_not:
                if rx.search(text):
                    res.result, res.reason = MISMATCH, f"body matches forbidden {rx.pattern!r}"
                    return


def client_error_result(e: aiohttp.ClientError, host: str, phase: str) -> tuple[str, str]:
    """Map an aiohttp client error to a (result, reason) pair."""
    if isinstance(e, aiohttp.ClientConnectorCertificateError):
        return TLS_ERROR, tls_reason(e.certificate_error)
    if isinstance(e, aiohttp.ClientConnectorSSLError):
        return TLS_ERROR, tls_reason(e.os_error)
    if isinstance(e, aiohttp.ClientConnectorError):
        if _is_dns_error(e):
            return DNS_ERROR, f"cannot resolve {host!r}: {_gai_text(e.os_error)}"
        return CONNECTION_FAILED, f"cannot connect to {e.host}:{e.port}: {os_error_text(e.os_error)}"
    if isinstance(e, (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        return CONNECTION_FAILED, f"connection failed while {phase}: {e}"
    if isinstance(e, aiohttp.ClientResponseError):
        return BAD_STATUS, f"invalid response while {phase}: {e.message}"
    return CONNECTION_FAILED, f"{type(e).__name__} while {phase}: {e}"


def _charset(resp: aiohttp.ClientResponse) -> str:
    enc = resp.charset or "utf-8"
    try:
        codecs.lookup(enc)
    except LookupError:
        return "utf-8"
    return enc


def _is_dns_error(e: aiohttp.ClientConnectorError) -> bool:
    dns_cls = getattr(aiohttp, "ClientConnectorDNSError", None)
    if dns_cls is not None and isinstance(e, dns_cls):
        return True
    return isinstance(e.os_error, socket.gaierror) or isinstance(e.os_error.__cause__, socket.gaierror)


def _gai_text(e: BaseException) -> str:
    cause = e.__cause__ if isinstance(e.__cause__, socket.gaierror) else e
    if isinstance(cause, socket.gaierror) and cause.strerror:
        return cause.strerror
    return str(e)
