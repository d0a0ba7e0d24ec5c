"""ICMP echo engine: one socket per address family shared by all targets, replies matched by (address, sequence).

Why not icmplib's `async_multiping`: it opens a socket per target and times replies on the event loop,
which gave false loss and inflated round-trip times at high concurrency. Here:

- one socket per address family for every target of a run (datagram "ping" sockets when
  `net.ipv4.ping_group_range` allows them, raw sockets with CAP_NET_RAW otherwise);
- replies are matched by (source address, sequence) — and by identifier and a per-engine cookie in
  the payload on raw sockets, which also see other programs' ICMP traffic. On datagram sockets the
  kernel rewrites the identifier to the socket's port and only delivers our own replies;
- round-trip times use the kernel's receive timestamp (SO_TIMESTAMPNS), so a busy event loop
  delays the bookkeeping, never the measurement; a reply counts when its kernel timestamp is within
  the per-echo timeout;
- sends are paced (token bucket, `rate` packets/s) and the receive buffer is enlarged so bursts of
  replies are not dropped by our own socket;
- ICMP errors (destination unreachable, time exceeded) end an echo early with a reason: parsed from
  the raw socket, or read from the error queue (IP_RECVERR) of a datagram socket.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Literal, Sequence

SocketMode = Literal["auto", "dgram", "raw"]

# Linux constants Python's socket module does not export.
_SO_TIMESTAMPNS = 35  # == SCM_TIMESTAMPNS; struct timespec with 64-bit fields on 64-bit platforms
_SO_RCVBUFFORCE = 33
_IP_RECVERR = 11
_IPV6_RECVERR = 25
_SOL_RAW = 255
_ICMP_FILTER = 1
_ICMP6_FILTER = 1
_MSG_ERRQUEUE = 0x2000
_SO_EE_ORIGIN_ICMP = 2
_SO_EE_ORIGIN_ICMP6 = 3

_HDR = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_TS = struct.Struct("@qq")
_EE = struct.Struct("@IBBBBII")  # sock_extended_err

#: receive buffer asked for (root may exceed net.core.rmem_max through SO_RCVBUFFORCE)
RCVBUF_BYTES = 4 * 1024 * 1024
#: how many datagrams one reader callback drains before yielding back to the loop
_DRAIN_BATCH = 512

_V4_UNREACH = {
    0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable", 3: "port unreachable",
    4: "fragmentation needed", 5: "source route failed", 6: "destination network unknown",
    7: "destination host unknown", 9: "network administratively prohibited",
    10: "host administratively prohibited", 11: "network unreachable for TOS", 12: "host unreachable for TOS",
    13: "communication administratively prohibited",
}
_V6_UNREACH = {
    0: "no route to destination", 1: "communication administratively prohibited", 2: "beyond scope of source address",
    3: "address unreachable", 4: "port unreachable", 5: "source address failed ingress/egress policy",
    6: "reject route to destination",
}


_SEND_ERRORS = {
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
    errno.EINVAL: "invalid destination (blackhole route?)",
    errno.EACCES: "prohibited (prohibit route or broadcast address)",
    errno.EPERM: "not permitted (rejected by a firewall rule)",
}


class IcmpPermissionError(PermissionError):
    """Neither an unprivileged ICMP datagram socket nor a raw socket could be opened."""


def ping_group_range() -> str:
    """The current `net.ipv4.ping_group_range` (this network namespace), or '?' when unreadable."""
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as f:
            return " ".join(f.read().split())
    except OSError:
        return "?"


def permission_message(family: int, mode: SocketMode, dgram_err: BaseException | None, raw_err: BaseException | None) -> str:
    fam = "IPv6" if family == socket.AF_INET6 else "IPv4"
    gids = sorted({os.getegid(), *os.getgroups()})
    dgram = (
        f"unprivileged ICMP datagram sockets are not allowed for this process (its groups {', '.join(map(str, gids))} "
        f"are outside net.ipv4.ping_group_range = \"{ping_group_range()}\"; allow them with "
        f"`sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`)"
    )
    raw = (
        "raw ICMP sockets need the CAP_NET_RAW capability (run as root, `setcap cap_net_raw+ep` on the "
        "interpreter, or systemd `AmbientCapabilities=CAP_NET_RAW`)"
    )
    detail = []
    if dgram_err is not None:
        detail.append(f"datagram socket: {dgram_err}")
    if raw_err is not None:
        detail.append(f"raw socket: {raw_err}")
    if mode == "dgram":
        head, tail = dgram, "or use socket: raw with CAP_NET_RAW"
        return f"cannot open an {fam} ICMP datagram socket: {head} ({'; '.join(detail)}); {tail}"
    if mode == "raw":
        return f"cannot open an {fam} raw ICMP socket: {raw} ({'; '.join(detail)}); or use socket: dgram with net.ipv4.ping_group_range"
    return f"cannot open an {fam} ICMP socket: {dgram}, and {raw} ({'; '.join(detail)})"


@dataclass(frozen=True, slots=True)
class EchoTarget:
    """A resolved address: family, canonical address text (no scope) and the sockaddr to send to."""

    family: int
    address: str
    sockaddr: tuple


@dataclass(slots=True)
class EchoResult:
    """What the echoes to one target found."""

    sent: int = 0
    #: (echo index, round-trip seconds) of every reply within the timeout
    replies: list[tuple[int, float]] = field(default_factory=list)
    #: echoes ended by an ICMP error or a send error, and the reason of the last one
    errors: int = 0
    error: str = ""
    late: int = 0

    @property
    def received(self) -> int:
        return len(self.replies)


class _Batch:
    __slots__ = ("pending", "done", "sending", "timeout_ns", "keys")

    def __init__(self, timeout: float) -> None:
        self.pending = 0
        self.done = asyncio.Event()
        self.sending = True
        self.timeout_ns = int(timeout * 1e9)
        self.keys: list[tuple[_Sock, tuple[str, int]]] = []

    def finish_one(self) -> None:
        self.pending -= 1
        if self.pending <= 0 and not self.sending:
            self.done.set()


class _Echo:
    __slots__ = ("result", "index", "send_rt", "send_mono", "batch")

    def __init__(self, result: EchoResult, index: int, send_rt: int, send_mono: int, batch: _Batch) -> None:
        self.result = result
        self.index = index
        self.send_rt = send_rt
        self.send_mono = send_mono
        self.batch = batch


def _fold(s: int) -> int:
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


class _Sock:
    """One ICMP socket (one family, one mode) registered on the event loop."""

    def __init__(self, engine: "IcmpEngine", family: int, mode: Literal["dgram", "raw"], sock: socket.socket) -> None:
        self.engine = engine
        self.family = family
        self.mode = mode
        self.sock = sock
        self.raw = mode == "raw"
        self.v4 = family == socket.AF_INET
        self.req_type = 8 if self.v4 else 128
        self.reply_type = 0 if self.v4 else 129
        self.err_types = (3, 11) if self.v4 else (1, 3)
        if self.raw:
            self.ident = random.getrandbits(16)
        else:
            self.ident = sock.getsockname()[1]
        self.seq = random.getrandbits(16)
        self.pending: dict[tuple[str, int], _Echo] = {}
        self.payload = engine.payload
        # only raw IPv4 needs our checksum: the kernel fills it for ping sockets and for ICMPv6
        self.csum_base = _sum16(self.payload) + (self.req_type << 8) if (self.raw and self.v4) else None

    def packet(self, seq: int) -> bytes:
        if self.csum_base is None:
            return _HDR.pack(self.req_type, 0, 0, self.ident, seq) + self.payload
        return _HDR.pack(self.req_type, 0, _fold(self.csum_base + self.ident + seq), self.ident, seq) + self.payload

    def next_seq(self, address: str) -> int:
        pending = self.pending
        for _ in range(65536):
            self.seq = (self.seq + 1) & 0xFFFF
            if (address, self.seq) not in pending:
                return self.seq
        raise RuntimeError(f"more than 65536 echoes in flight to {address}")

    # ------------------------------------------------------------ receiving

    def on_readable(self) -> None:
        recvmsg = self.sock.recvmsg
        pending = self.pending
        cookie = self.engine.cookie
        raw, v4, reply_type, ident = self.raw, self.v4, self.reply_type, self.ident
        for _ in range(_DRAIN_BATCH):
            try:
                data, anc, _flags, addr = recvmsg(65536, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # a datagram socket reports a queued ICMP error once as a recv error: read the error queue
                if not raw:
                    self.drain_errqueue()
                    continue
                return
            rx_rt = 0
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == _SO_TIMESTAMPNS and len(cdata) >= 16:
                    sec, nsec = _TS.unpack_from(cdata)
                    rx_rt = sec * 1_000_000_000 + nsec
            off = ((data[0] & 0x0F) << 2) if (raw and v4 and data) else 0
            if len(data) < off + 8:
                continue
            typ_ = data[off]
            if typ_ == reply_type:
                _t, _c, _ck, rid, seq = _HDR.unpack_from(data, off)
                if raw and rid != ident:
                    continue
                if data[off + 8 : off + 16] != cookie:
                    continue
                host = addr[0]
                if "%" in host:
                    host = host.partition("%")[0]
                echo = pending.pop((host, seq), None)
                if echo is not None:
                    self.complete(echo, rx_rt)
            elif raw and typ_ in self.err_types:
                self.on_icmp_error(data, off, addr[0])

    def complete(self, echo: _Echo, rx_rt: int) -> None:
        mono = time.monotonic_ns() - echo.send_mono
        rtt = rx_rt - echo.send_rt if rx_rt else mono
        if rtt < 0 or rtt > mono + 1_000_000:  # wall clock stepped between send and receive
            rtt = mono
        batch = echo.batch
        if rtt <= batch.timeout_ns:
            echo.result.replies.append((echo.index, rtt / 1e9))
        else:
            echo.result.late += 1
        batch.finish_one()

    def fail(self, key: tuple[str, int], reason: str) -> None:
        echo = self.pending.pop(key, None)
        if echo is None:
            return
        echo.result.errors += 1
        echo.result.error = reason
        echo.batch.finish_one()

    def on_icmp_error(self, data: bytes, off: int, reporter: str) -> None:
        """An ICMP error seen on a raw socket: find our echo request quoted in it."""
        typ, code = data[off], data[off + 1]
        inner = off + 8
        if self.v4:
            if len(data) < inner + 20:
                return
            ihl = (data[inner] & 0x0F) << 2
            dst = socket.inet_ntop(socket.AF_INET, data[inner + 16 : inner + 20])
            q = inner + ihl
            reason = _V4_UNREACH.get(code, f"destination unreachable (code {code})") if typ == 3 else "time to live exceeded in transit"
        else:
            if len(data) < inner + 40:
                return
            dst = socket.inet_ntop(socket.AF_INET6, data[inner + 24 : inner + 40])
            q = inner + 40
            reason = _V6_UNREACH.get(code, f"destination unreachable (code {code})") if typ == 1 else "hop limit exceeded in transit"
        if len(data) < q + 8:
            return
        qtype, _c, _ck, qid, qseq = _HDR.unpack_from(data, q)
        if qtype != self.req_type or qid != self.ident:
            return
        self.fail((dst, qseq), f"{reason} (reported by {reporter.partition('%')[0]})")

    def drain_errqueue(self) -> None:
        """Read ICMP errors queued on a datagram socket (IP_RECVERR / IPV6_RECVERR)."""
        level = socket.IPPROTO_IP if self.v4 else socket.IPPROTO_IPV6
        opt = _IP_RECVERR if self.v4 else _IPV6_RECVERR
        for _ in range(_DRAIN_BATCH):
            try:
                data, anc, _flags, addr = self.sock.recvmsg(512, 512, _MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(data) < 8 or not addr:
                continue
            seq = struct.unpack_from("!H", data, 6)[0]
            dst = addr[0].partition("%")[0]
            reason = "ICMP error"
            for clevel, ctype, cdata in anc:
                if clevel == level and ctype == opt and len(cdata) >= _EE.size:
                    ee_errno, origin, etype, ecode, _pad, _info, _d = _EE.unpack_from(cdata)
                    if origin == _SO_EE_ORIGIN_ICMP:
                        reason = _V4_UNREACH.get(ecode, os.strerror(ee_errno).lower()) if etype == 3 else "time to live exceeded in transit"
                    elif origin == _SO_EE_ORIGIN_ICMP6:
                        reason = _V6_UNREACH.get(ecode, os.strerror(ee_errno).lower()) if etype == 1 else "hop limit exceeded in transit"
                    else:
                        reason = os.strerror(ee_errno).lower()
                    off = _EE.size
                    if len(cdata) >= off + 8:  # the offender's sockaddr follows
                        fam = struct.unpack_from("@H", cdata, off)[0]
                        if fam == socket.AF_INET and len(cdata) >= off + 8:
                            reason += f" (reported by {socket.inet_ntop(socket.AF_INET, cdata[off + 4 : off + 8])})"
                        elif fam == socket.AF_INET6 and len(cdata) >= off + 24:
                            reason += f" (reported by {socket.inet_ntop(socket.AF_INET6, cdata[off + 8 : off + 24])})"
            self.fail((dst, seq), reason)


def _open_socket(family: int, mode: Literal["dgram", "raw"]) -> socket.socket:
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    stype = socket.SOCK_DGRAM if mode == "dgram" else socket.SOCK_RAW
    s = socket.socket(family, stype | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, proto)
    try:
        s.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        try:
            s.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RCVBUF_BYTES)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        if mode == "dgram":
            if family == socket.AF_INET:
                s.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
                s.bind(("0.0.0.0", 0))
            else:
                s.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
                s.bind(("::", 0))
        elif family == socket.AF_INET:
            # let only echo replies and errors reach us (bit set = blocked)
            blocked = 0xFFFFFFFF & ~((1 << 0) | (1 << 3) | (1 << 11))
            s.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("@I", blocked))
        else:
            words = [0xFFFFFFFF] * 8
            for t in (1, 3, 129):
                words[t >> 5] &= ~(1 << (t & 31))
            s.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("@8I", *words))
    except BaseException:
        s.close()
        raise
    return s


class IcmpEngine:
    """Sends echo requests to many targets over shared sockets and collects the replies.

    Bound to the event loop of its first use; `close()` releases the sockets. Concurrent `ping()`
    calls on one engine are safe (sequences are unique per socket while in flight).
    """

    def __init__(self, mode: SocketMode = "auto", size: int = 56) -> None:
        if size < 8:
            raise ValueError("payload size must be at least 8 bytes")
        self.mode = mode
        self.cookie = random.getrandbits(64).to_bytes(8, "big")
        self.payload = self.cookie + bytes(i & 0xFF for i in range(size - 8))
        self._socks: dict[int, _Sock] = {}
        self._unavailable: dict[int, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def socket_mode(self, family: int) -> str | None:
        s = self._socks.get(family)
        return s.mode if s else None

    def _socket(self, family: int) -> _Sock | None:
        """The socket of a family, opened on first use; None when the family is unavailable here."""
        s = self._socks.get(family)
        if s is not None:
            return s
        if family in self._unavailable:
            return None
        order: list[Literal["dgram", "raw"]] = ["dgram", "raw"] if self.mode == "auto" else [self.mode]  # type: ignore[list-item]
        errs: dict[str, OSError] = {}
        for m in order:
            try:
                sock = _open_socket(family, m)
            except OSError as e:
                if e.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.EADDRNOTAVAIL):
                    self._unavailable[family] = f"{'IPv6' if family == socket.AF_INET6 else 'IPv4'} is not available on this host ({e.strerror})"
                    return None
                errs[m] = e
                continue
            s = _Sock(self, family, m, sock)
            assert self._loop is not None
            self._loop.add_reader(sock.fileno(), s.on_readable)
            self._socks[family] = s
            return s
        raise IcmpPermissionError(permission_message(family, self.mode, errs.get("dgram"), errs.get("raw")))

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.close()
            self._loop = loop

    async def ping(
        self,
        targets: Sequence[EchoTarget],
        *,
        count: int = 3,
        interval: float = 1.0,
        timeout: float = 1.0,
        rate: float = 1000.0,
    ) -> list[EchoResult]:
        """Send `count` echoes to every target, `interval` apart per target, at most `rate` packets/s
        overall (0 = unpaced); an echo is lost when no reply came within `timeout` of its send."""
        self._bind_loop()
        results = [EchoResult() for _ in targets]
        socks: list[_Sock | None] = []
        by_family: dict[int, _Sock | None] = {}
        for t in targets:
            if t.family not in by_family:
                by_family[t.family] = self._socket(t.family)
            socks.append(by_family[t.family])
        for i, s in enumerate(socks):
            if s is None:
                r = results[i]
                r.sent, r.errors, r.error = count, count, self._unavailable.get(targets[i].family, "address family unavailable")

        batch = _Batch(timeout)
        gap = 1.0 / rate if rate > 0 else 0.0
        mono = time.monotonic
        t0 = mono()
        next_t = t0
        sent_since_yield = 0
        try:
            for k in range(count):
                round_at = t0 + k * interval
                now = mono()
                if round_at > now:
                    await asyncio.sleep(round_at - now)
                for i, t in enumerate(targets):
                    s = socks[i]
                    if s is None:
                        continue
                    if gap:
                        now = mono()
                        if next_t < now - 0.002:  # at most 2 ms of burst credit
                            next_t = now - 0.002
                        if next_t > now + 0.001:
                            await asyncio.sleep(next_t - now)
                        next_t += gap
                    else:
                        sent_since_yield += 1
                        if sent_since_yield >= 256:
                            sent_since_yield = 0
                            await asyncio.sleep(0)
                    await self._send(s, t, k, results[i], batch)
            batch.sending = False
            if batch.pending > 0:
                # the last echo was just sent: nothing can be in time later than one timeout from now
                try:
                    async with asyncio.timeout(timeout + 0.005):
                        await batch.done.wait()
                except TimeoutError:
                    pass
                # replies already queued in the kernel count by their receive timestamp
                if batch.pending > 0:
                    for s in set(by_family.values()):
                        if s is not None:
                            s.on_readable()
        finally:
            for s, key in batch.keys:
                echo = s.pending.get(key)
                if echo is not None and echo.batch is batch:
                    del s.pending[key]
        return results

    async def _send(self, s: _Sock, t: EchoTarget, index: int, result: EchoResult, batch: _Batch) -> None:
        seq = s.next_seq(t.address)
        key = (t.address, seq)
        pkt = s.packet(seq)
        result.sent += 1
        for attempt in range(50):
            echo = _Echo(result, index, time.time_ns(), time.monotonic_ns(), batch)
            s.pending[key] = echo
            batch.pending += 1
            try:
                s.sock.sendto(pkt, t.sockaddr)
            except (BlockingIOError, InterruptedError) as e:
                del s.pending[key]
                batch.pending -= 1
                if attempt == 49:
                    result.errors += 1
                    result.error = f"send failed: {e.strerror or e}"
                    return
                await asyncio.sleep(0.001)  # socket send buffer full: let it drain
                continue
            except OSError as e:
                if s.pending.pop(key, None) is not None:
                    batch.pending -= 1
                if e.errno == errno.ENOBUFS and attempt < 49:
                    await asyncio.sleep(0.001)
                    continue
                result.errors += 1
                result.error = f"send failed: {_SEND_ERRORS.get(e.errno or 0) or (e.strerror or str(e)).lower()}"
                return
            batch.keys.append((s, key))
            return

    def close(self) -> None:
        for s in self._socks.values():
            if self._loop is not None and not self._loop.is_closed():
                try:
                    self._loop.remove_reader(s.sock.fileno())
                except Exception:
                    pass
            s.sock.close()
        self._socks.clear()
        self._unavailable.clear()
        self._loop = None
