"""TCP probe (connect time, send/expect, TLS with certificate expiry) and the socket/TLS helpers other probes share."""

from __future__ import annotations

import asyncio
import calendar
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from checks.base import (
    CONNECTION_FAILED,
    CheckConfig,
    DNS_ERROR,
    MISMATCH,
    TIMEOUT,
    TLS_ERROR,
    Probe,
    ProbeResult,
    probe_metrics,
)
from checks.catalogue import MetricSpec
from checks.config import ByteSize
from checks.model import Sample

# ---------------------------------------------------------------- shared helpers


class ProbeFailure(Exception):
    """Raised inside a probe to end it with a result and a human-readable reason."""

    def __init__(self, result: str, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


def parse_host_port(value: str, default_port: int | None = None) -> tuple[str, int]:
    """Split `host:port`, `[v6addr]:port` or (with a default port) a bare host; ValueError names what is wrong."""
    v = value.strip()
    if not v:
        raise ValueError("must be host:port, got an empty string")
    host, port_s = v, ""
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            raise ValueError(f"unbalanced '[' in {value!r}; use [2001:db8::1]:port")
        host, rest = v[1:end], v[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"expected ':port' after ']' in {value!r}")
        port_s = rest[1:]
    elif v.count(":") == 1:
        host, port_s = v.split(":")
    elif v.count(":") > 1:
        raise ValueError(f"IPv6 addresses need brackets: [{v}]:port")
    if not host:
        raise ValueError(f"missing host in {value!r}")
    if not port_s:
        if default_port is None:
            raise ValueError(f"missing port in {value!r}; expected host:port")
        return host, default_port
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"port must be 1..65535, got {port_s!r}")
    return host, int(port_s)


def probe_deadline(config: CheckConfig) -> float:
    """Seconds a probe may take: a little under the check's timeout, so that the probe reports result=timeout
    (with up=0 and a reason) before the scheduler's own deadline cancels it without readings."""
    t = config.effective_timeout
    return max(t - min(0.25, t * 0.1), t * 0.5)


def failure_result(e: BaseException, deadline: float, phase: str) -> tuple[str, str]:
    """(result, reason) for the ends probes share: the deadline passing while `phase`, a ProbeFailure,
    or (for a plain OSError) a connection error."""
    if isinstance(e, TimeoutError):
        return TIMEOUT, f"no answer within {deadline:.3g}s while {phase}"
    if isinstance(e, ProbeFailure):
        return e.result, e.reason
    if isinstance(e, OSError):
        return CONNECTION_FAILED, f"connection error while {phase}: {os_error_text(e)}"
    raise TypeError(f"not a probe failure: {e!r}")


def os_error_text(e: OSError) -> str:
    """A short reason for a socket error ("Connection refused"), without asyncio's wrapping."""
    if e.errno:
        return os.strerror(e.errno)
    return str(e) or type(e).__name__


def url_label(url: str) -> str:
    """A URL for the `target` tag and messages: any password in it replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(url)
    if u.password is None:
        return url
    netloc = u.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urlunsplit((u.scheme, f"{userinfo}:***@{netloc[1]}", u.path, u.query, u.fragment))


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def resolve(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
    """Resolve `host` now (no caching); returns [(family, sockaddr)]. DNS failures raise ProbeFailure(dns_error)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as e:
        raise ProbeFailure(DNS_ERROR, f"cannot resolve {host!r}: {e.strerror or e}") from None
    except UnicodeError as e:
        raise ProbeFailure(DNS_ERROR, f"invalid host name {host!r}: {e}") from None
    seen: list[tuple[int, tuple[Any, ...]]] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if (family, sockaddr) not in seen:
            seen.append((family, sockaddr))
    if not seen:
        raise ProbeFailure(DNS_ERROR, f"{host!r} resolved to no address")
    return seen


async def open_first(
    addrs: list[tuple[int, tuple[Any, ...]]], what: str, limit: int = 2**16
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """Connect to the first address that accepts; failures of all raise ProbeFailure(connection_failed)."""
    errors: list[tuple[str, str]] = []
    for _family, sockaddr in addrs:
        try:
            reader, writer = await asyncio.open_connection(sockaddr[0], sockaddr[1], limit=limit)
            return reader, writer, str(sockaddr[0])
        except OSError as e:
            errors.append((format_host_port(str(sockaddr[0]), sockaddr[1]), os_error_text(e)))
    if len(errors) == 1:
        addr, err = errors[0]
        where = what if addr == what else f"{what} ({addr})"
        raise ProbeFailure(CONNECTION_FAILED, f"cannot connect to {where}: {err}")
    raise ProbeFailure(CONNECTION_FAILED, f"cannot connect to {what}: " + "; ".join(f"{a}: {e}" for a, e in errors))


# ---------------------------------------------------------------- TLS helpers


@dataclass(frozen=True, kw_only=True)
class TlsSettings:
    """TLS client options shared by the probes (mixed into their config dataclasses)."""

    #: verify the server's certificate chain and host name
    tls_verify: bool = True
    #: CA bundle (PEM) to verify against instead of the system store
    tls_ca_file: str | None = None
    #: client certificate (PEM) and its key, for mutual TLS
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    #: host name to send (SNI) and verify instead of the target's host
    tls_server_name: str | None = None

    def _check_tls_files(self) -> None:
        for opt in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
            p = getattr(self, opt)
            if p is not None and not os.path.isfile(p):
                raise ValueError(f"{opt}: no such file {p!r}")
        if self.tls_key_file and not self.tls_cert_file:
            raise ValueError("tls_key_file needs tls_cert_file")

    def ssl_context(self) -> ssl.SSLContext:
        """The client context for these settings, shared by every check with the same settings (loading the
        system CA store costs ~30 ms and memory per context); a changed file gives a new context.
        Errors raise ProbeFailure(tls_error)."""
        files = (self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
        key = (self.tls_verify, files, tuple(_mtime(f) for f in files))
        ctx = _SSL_CONTEXTS.get(key)
        if ctx is None:
            ctx = _build_ssl_context(self.tls_verify, *files)
            if len(_SSL_CONTEXTS) >= 64:
                _SSL_CONTEXTS.clear()
            _SSL_CONTEXTS[key] = ctx
        return ctx


_SSL_CONTEXTS: dict[tuple[Any, ...], ssl.SSLContext] = {}


def _mtime(path: str | None) -> float | None:
    if path is None:
        return None
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _build_ssl_context(verify: bool, ca_file: str | None, cert_file: str | None, key_file: str | None) -> ssl.SSLContext:
    try:
        if verify:
            ctx = ssl.create_default_context(cafile=ca_file)
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cert_file:
            ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as e:
        raise ProbeFailure(TLS_ERROR, f"cannot load TLS files: {e}") from None
    return ctx


def _der_item(b: bytes, i: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER item at offset i."""
    tag = b[i]
    n = b[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(b[i : i + k], "big")
        i += k
    return tag, i, i + n


def _der_time(tag: int, s: bytes) -> float:
    t = s.decode("ascii").rstrip("Z")
    if tag == 0x17:  # UTCTime YYMMDDHHMM[SS]
        yy = int(t[:2])
        t = f"{1900 + yy if yy >= 50 else 2000 + yy}{t[2:]}"
    if len(t) == 12:
        t += "00"
    st = time.strptime(t[:14], "%Y%m%d%H%M%S")
    return float(calendar.timegm(st))


def cert_not_after(der: bytes) -> float:
    """The notAfter of a DER certificate as a unix timestamp (a tiny DER walk: no third-party library)."""
    _, cert_s, _ = _der_item(der, 0)  # Certificate SEQUENCE
    _, tbs_s, tbs_e = _der_item(der, cert_s)  # TBSCertificate SEQUENCE
    i = tbs_s
    tag, s, e = _der_item(der, i)
    if tag == 0xA0:  # [0] version
        i = e
    for _ in range(3):  # serialNumber, signature, issuer
        _, _, i = _der_item(der, i)
    tag, vs, ve = _der_item(der, i)  # Validity SEQUENCE
    if tag != 0x30 or ve > tbs_e:
        raise ValueError("no validity in certificate")
    _, _, j = _der_item(der, vs)  # notBefore
    tag, s, e = _der_item(der, j)  # notAfter
    return _der_time(tag, der[s:e])


def cert_days_left(der: bytes, now: float | None = None) -> float | None:
    """Days (fractional, negative when expired) until a DER certificate expires; None if unparsable."""
    try:
        return (cert_not_after(der) - (time.time() if now is None else now)) / 86400.0
    except (ValueError, IndexError, UnicodeError):
        return None


def peer_cert_der(writer_or_transport: Any) -> bytes | None:
    sslobj = writer_or_transport.get_extra_info("ssl_object")
    if sslobj is None:
        return None
    try:
        return sslobj.getpeercert(binary_form=True)
    except (ValueError, ssl.SSLError):
        return None


async def fetch_cert_unverified(host: str, port: int, server_name: str | None) -> bytes | None:
    """Fetch a server's certificate without verifying it (to report expiry when verification failed)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        _r, w = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=server_name or host)
    except (OSError, ssl.SSLError):
        return None
    try:
        return peer_cert_der(w)
    finally:
        w.transport.abort()


def tls_reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {e.verify_message or e.reason}"
    return f"TLS handshake failed: {getattr(e, 'reason', None) or e}"


# ---------------------------------------------------------------- the TCP probe


@dataclass(frozen=True, kw_only=True)
class TcpConfig(TlsSettings, CheckConfig):
    #: host:port ([v6addr]:port for IPv6 literals); the host is resolved on every run
    target: str
    #: text sent after connecting (YAML escapes like "\r\n" work in double quotes)
    send: str | None = None
    #: regular expression the received data must match (read until it does, the peer closes, or read_limit)
    expect: str | None = None
    #: most bytes read while waiting for `expect`
    read_limit: ByteSize = 65536
    #: wrap the connection in TLS (see the tls_* options)
    tls: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            parse_host_port(self.target)
        except ValueError as e:
            raise ValueError(f"target: {e}") from None
        if self.expect is not None:
            try:
                re.compile(self.expect.encode())
            except re.error as e:
                raise ValueError(f"expect: invalid regular expression: {e}") from None
        if self.read_limit <= 0:
            raise ValueError("read_limit must be greater than 0")
        self._check_tls_files()


class TcpCheck(Probe[TcpConfig]):
    """Connect to host:port (optionally TLS), optionally send a string and expect a reply pattern."""

    Config: ClassVar[type[CheckConfig]] = TcpConfig
    METRICS = probe_metrics("tcp", "TCP port") + (
        MetricSpec("tcp.connect_seconds", "seconds", "gauge", "time to establish the TCP connection", ("target",)),
        MetricSpec("tcp.tls_handshake_seconds", "seconds", "gauge", "time of the TLS handshake", ("target",)),
        MetricSpec("tcp.tls_cert_expiry_days", "days", "gauge", "days until the server certificate expires (negative: expired)", ("target",)),
        MetricSpec(
            "tcp.tls_chain_valid", "bool", "gauge",
            "TLS with tls_verify: 1 if the certificate chain and host name verified, 0 if verification failed",
            ("target",),
        ),
        MetricSpec("tcp.response_seconds", "seconds", "gauge", "time from sending until the expected reply was seen", ("target",)),
    )

    def __init__(self, config: TcpConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        self._host, self._port = parse_host_port(config.target)
        self._expect = re.compile(config.expect.encode()) if config.expect is not None else None
        self._ssl: ssl.SSLContext | None = None

    async def probe(self) -> ProbeResult:
        c = self.config
        deadline = probe_deadline(c)
        res = ProbeResult()
        phase = "resolving"
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(deadline):
                addrs = await resolve(self._host, self._port)
                phase = "connecting"
                t0 = time.perf_counter()
                reader, writer, ip = await open_first(addrs, c.target, limit=max(c.read_limit, 2**16))
                ts = time.time()
                res.samples.append(Sample("tcp.connect_seconds", time.perf_counter() - t0, ts))
                if c.tls:
                    phase = "in the TLS handshake"
                    if self._ssl is None:
                        self._ssl = c.ssl_context()
                    sni = c.tls_server_name or self._host
                    t1 = time.perf_counter()
                    try:
                        await writer.start_tls(self._ssl, server_hostname=sni)
                    except ssl.SSLError as e:
                        der = await fetch_cert_unverified(ip, self._port, sni)
                        days = cert_days_left(der) if der else None
                        if days is not None:
                            res.samples.append(Sample("tcp.tls_cert_expiry_days", days, ts))
                        if isinstance(e, ssl.SSLCertVerificationError):
                            res.samples.append(Sample("tcp.tls_chain_valid", 0.0, ts))
                        raise ProbeFailure(TLS_ERROR, tls_reason(e)) from None
                    res.samples.append(Sample("tcp.tls_handshake_seconds", time.perf_counter() - t1, ts))
                    der = peer_cert_der(writer)
                    days = cert_days_left(der) if der else None
                    if days is not None:
                        res.samples.append(Sample("tcp.tls_cert_expiry_days", days, ts))
                    if c.tls_verify:
                        res.samples.append(Sample("tcp.tls_chain_valid", 1.0, ts))
                t2 = time.perf_counter()
                if c.send is not None:
                    phase = "sending"
                    writer.write(c.send.encode())
                    await writer.drain()
                if self._expect is not None:
                    phase = f"waiting for a reply matching {c.expect!r}"
                    await self._read_expect(reader, c.read_limit)
                    res.samples.append(Sample("tcp.response_seconds", time.perf_counter() - t2, ts))
        except (TimeoutError, ProbeFailure) as e:
            res.result, res.reason = failure_result(e, deadline, phase)
        except ssl.SSLError as e:
            res.result, res.reason = TLS_ERROR, tls_reason(e)
        except OSError as e:
            res.result, res.reason = failure_result(e, deadline, phase)
        finally:
            if writer is not None:
                writer.close()
        return res

    async def _read_expect(self, reader: asyncio.StreamReader, limit: int) -> None:
        assert self._expect is not None
        buf = b""
        while True:
            if self._expect.search(buf):
                return
            if len(buf) >= limit:
                raise ProbeFailure(MISMATCH, f"no match for {self.config.expect!r} in the first {limit} bytes: {buf[:120]!r}")
            chunk = await reader.read(limit - len(buf))
            if not chunk:
                raise ProbeFailure(MISMATCH, f"connection closed before {self.config.expect!r} matched; received {buf[:120]!r}")
            buf += chunk
