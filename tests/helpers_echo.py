"""Userspace ICMP echo responder for tests: answers IPv4/IPv6 echo requests after a fixed delay.

The kernel here has no netem, so latency is simulated by this responder, run inside a network
namespace with `net.ipv4.icmp_echo_ignore_all=1` / `net.ipv6.icmp.echo_ignore_all=1` (the kernel
stays silent, this program answers). Raw sockets: needs CAP_NET_RAW. Prints "ready" once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def open_v4() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.IPPROTO_ICMP)
    s.setsockopt(255, 1, struct.pack("@I", 0xFFFFFFFF & ~(1 << 8)))  # ICMP_FILTER: only echo requests
    return s


def open_v6() -> socket.socket | None:
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.IPPROTO_ICMPV6)
    except OSError:
        return None
    words = [0xFFFFFFFF] * 8
    words[128 >> 5] &= ~(1 << (128 & 31))  # ICMP6_FILTER: only echo requests
    s.setsockopt(socket.IPPROTO_ICMPV6, 1, struct.pack("@8I", *words))
    return s


async def main(delay: float) -> None:
    loop = asyncio.get_running_loop()
    v4 = open_v4()
    v6 = open_v6()

    def on_v4() -> None:
        while True:
            try:
                data, addr = v4.recvfrom(65536)
            except BlockingIOError:
                return
            ihl = (data[0] & 0x0F) * 4
            icmp = data[ihl:]
            if len(icmp) < 8 or icmp[0] != 8:
                continue
            body = b"\x00\x00\x00\x00" + icmp[4:]
            reply = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
            loop.call_later(delay, v4.sendto, reply, (addr[0], 0))

    def on_v6() -> None:
        assert v6 is not None
        while True:
            try:
                data, addr = v6.recvfrom(65536)
            except BlockingIOError:
                return
            if len(data) < 8 or data[0] != 128:
                continue
            reply = bytes([129, 0, 0, 0]) + data[4:]  # the kernel fills in the ICMPv6 checksum
            loop.call_later(delay, v6.sendto, reply, addr)

    loop.add_reader(v4.fileno(), on_v4)
    if v6 is not None:
        loop.add_reader(v6.fileno(), on_v6)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--delay", type=float, default=0.05, help="seconds to wait before answering")
    asyncio.run(main(ap.parse_args().delay))
