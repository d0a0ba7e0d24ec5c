"""Network-namespace lab for ping tests: namespaces, veth pairs and addresses created by the test, deleted at teardown.

All traffic stays inside the namespaces created here (addresses from 198.18.0.0/15, the benchmarking
range, and a random IPv6 ULA prefix). Needs root and iproute2; fails (never skips) when they are missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
# run as modules from the repo root (a script in tests/ would see tests/checks as `checks`)
RUNNER = "tests.helpers_runcheck"
ECHO = "tests.helpers_echo"


def _run(args: list[str], *, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(args, capture_output=True, text=True, input=input, timeout=30)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p


def require_netns_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.fail("network-namespace tests need root (ip netns, nft, sysctl inside namespaces)")
    for t in ("ip", *tools):
        if shutil.which(t) is None:
            pytest.fail(f"`{t}` is not installed: apt-get install {'iproute2' if t == 'ip' else t}")


@dataclass
class Netns:
    """One network namespace owned by the test."""

    name: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "-n", self.name, *args], check=check)

    def exec(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "netns", "exec", self.name, *args], check=check, input=input)

    def sysctl(self, key: str, value: str | None = None) -> str:
        """Read a sysctl of this namespace; set it when `value` is given. Returns the previous value."""
        old = self.exec("sysctl", "-n", key).stdout.strip()
        if value is not None:
            self.exec("sysctl", "-q", "-w", f"{key}={value}")
        return " ".join(old.split())

    def nft(self, script: str) -> str:
        return self.exec("nft", "-f", "-", input=script).stdout

    def popen(self, *args: str, unprivileged: bool = False) -> subprocess.Popen[str]:
        """Start a process in this namespace; `unprivileged`: without any capability (so no CAP_NET_RAW)
        and with only the group `nogroup` (65534) — the two things the kernel checks for ICMP sockets.

        The uid stays 0: the test interpreter may live under /root, which `nobody` cannot read; the
        kernel decides raw sockets by CAP_NET_RAW and datagram ICMP sockets by group, never by uid.
        """
        pre = ["setpriv", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"] if unprivileged else []
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *pre, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(ROOT),
            env=env,
        )
        self.procs.append(p)
        return p

    def delete(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        _run(["ip", "netns", "del", self.name], check=False)
        shutil.rmtree(f"/etc/netns/{self.name}", ignore_errors=True)


class CheckRunner:
    """A check running in a subprocess inside a namespace (optionally unprivileged), driven run by run.

    `unprivileged`: no capabilities and group 65534 only (see Netns.popen). The check object lives across runs (like in the agent), so state such as the targets currently
    down is kept between `run()` calls.
    """

    def __init__(self, ns: Netns, config: dict[str, Any], *, unprivileged: bool = False) -> None:
        self.proc = ns.popen(sys.executable, "-m", RUNNER, unprivileged=unprivileged)
        self._send({"op": "build", "config": config})

    def _send(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"check runner exited: {err.strip()}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise CheckRunError(reply.get("error", "?"))
        return reply

    def run(self) -> "RunResult":
        r = self._send({"op": "run"})
        return RunResult(r["readings"], r.get("modes", {}), r["elapsed"])

    def close(self) -> None:
        try:
            self._send({"op": "close"})
        except Exception:
            pass
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "CheckRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CheckRunError(RuntimeError):
    """The check raised in the subprocess; the message is the error as the scheduler would report it."""


@dataclass
class RunResult:
    readings: list[dict[str, Any]]
    modes: dict[str, str]
    elapsed: float

    def samples(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.readings if r.get("name") == name]

    def value(self, name: str, target: str) -> float | None:
        vals = [r["value"] for r in self.samples(name) if r["tags"].get("target") == target]
        assert len(vals) <= 1, f"{len(vals)} samples of {name} for {target}"
        return vals[0] if vals else None

    def tags(self, name: str, target: str) -> dict[str, str]:
        return next(r["tags"] for r in self.samples(name) if r["tags"].get("target") == target)

    def events(self) -> list[dict[str, Any]]:
        return [r for r in self.readings if "kind" in r]


@dataclass
class PingLab:
    """Pinger namespace A, joined by veth pairs to B (kernel echo, nftables) and C (userspace echo)."""

    a: Netns
    b: Netns
    c: Netns
    v6: str  # ULA prefix without the trailing "::", e.g. "fd12:3456:789a"
    #: how loss_in_b injected loss the last time: "netem" or "nftables" (kernel without sch_netem)
    loss_method: str = ""

    # A <-> B: 198.18.0.0/24 and {v6}:0::/64 ; A <-> C: 198.18.1.0/24 and {v6}:1::/64
    A_B4 = "198.18.0.1"
    A_C4 = "198.18.1.1"
    C4 = "198.18.1.2"
    #: addresses of B answered by its kernel
    B4_LIVE = tuple(f"198.18.0.{i}" for i in range(2, 52))

    @property
    def b6_live(self) -> tuple[str, ...]:
        return tuple(f"{self.v6}::{i:x}" for i in range(2, 12))

    @property
    def c6(self) -> str:
        return f"{self.v6}:1::2"

    def runner(self, config: dict[str, Any], *, unprivileged: bool = False) -> CheckRunner:
        return CheckRunner(self.a, config, unprivileged=unprivileged)

    def netem_available(self) -> bool:
        """Can a netem qdisc be added here? (needs the sch_netem kernel module; absent on some kernels)."""
        p = self.b.exec("tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms", check=False)
        if p.returncode == 0:
            self.b.exec("tc", "qdisc", "del", "dev", "lo", "root", check=False)
            return True
        return False

    @contextlib.contextmanager
    def loss_in_b(self, percent: int) -> Iterator[Callable[[], int]]:
        """Drop about `percent` % of B's traffic to A: netem on B's veth when the kernel has it, else an
        nftables rule in B dropping echo requests (`numgen random mod 100 < percent`). Yields a function
        returning how many packets were dropped so far. `self.loss_method` says which was used."""
        if self.netem_available():
            self.loss_method = "netem"
            self.b.exec("tc", "qdisc", "add", "dev", "veth0", "root", "netem", "loss", f"{percent}%")

            def dropped() -> int:
                out = self.b.exec("tc", "-s", "qdisc", "show", "dev", "veth0").stdout
                m = re.search(r"dropped (\d+)", out)
                return int(m.group(1)) if m else 0

            try:
                yield dropped
            finally:
                self.b.exec("tc", "qdisc", "del", "dev", "veth0", "root", check=False)
            return
        self.loss_method = "nftables"
        self.b.nft(
            "table inet iwloss {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
            f"  icmp type echo-request numgen random mod 100 < {percent} counter drop\n }}\n}}\n"
        )

        def dropped_nft() -> int:
            out = self.b.exec("nft", "list", "table", "inet", "iwloss").stdout
            return int(re.search(r"counter packets (\d+)", out).group(1))  # type: ignore[union-attr]

        try:
            yield dropped_nft
        finally:
            self.b.exec("nft", "delete", "table", "inet", "iwloss", check=False)

    def start_echo_responder(self, delay: float) -> subprocess.Popen[str]:
        p = self.c.popen(sys.executable, "-m", ECHO, "--delay", str(delay))
        assert p.stdout
        line = p.stdout.readline()
        if line.strip() != "ready":
            p.kill()
            raise RuntimeError(f"echo responder did not start: {line!r} {p.stderr.read() if p.stderr else ''}")
        return p


def make_lab() -> PingLab:
    tag = f"{os.getpid() % 100000}{secrets.token_hex(2)}"
    a, b, c = Netns(f"iwping{tag}a"), Netns(f"iwping{tag}b"), Netns(f"iwping{tag}c")
    r = secrets.randbits(40)  # a random ULA /48, written the canonical way (no leading zeros)
    v6 = f"fd{r >> 32:02x}:{(r >> 16) & 0xFFFF:x}:{r & 0xFFFF:x}"
    lab = PingLab(a, b, c, v6)
    created: list[Netns] = []
    try:
        for ns in (a, b, c):
            _run(["ip", "netns", "add", ns.name])
            created.append(ns)
            ns.ip("link", "set", "lo", "up")
            for k in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"):
                ns.sysctl(k, "0")
        _run(["ip", "link", "add", "veth0", "netns", a.name, "type", "veth", "peer", "name", "veth0", "netns", b.name])
        _run(["ip", "link", "add", "veth1", "netns", a.name, "type", "veth", "peer", "name", "veth0", "netns", c.name])
        a.ip("addr", "add", f"{lab.A_B4}/24", "dev", "veth0")
        a.ip("-6", "addr", "add", f"{v6}::1/64", "dev", "veth0", "nodad")
        a.ip("addr", "add", f"{lab.A_C4}/24", "dev", "veth1")
        a.ip("-6", "addr", "add", f"{v6}:1::1/64", "dev", "veth1", "nodad")
        for addr in lab.B4_LIVE:
            b.ip("addr", "add", f"{addr}/24", "dev", "veth0")
        for addr in lab.b6_live:
            b.ip("-6", "addr", "add", f"{addr}/64", "dev", "veth0", "nodad")
        b.ip("-6", "addr", "add", "fe80::2/64", "dev", "veth0", "nodad")
        c.ip("addr", "add", f"{lab.C4}/24", "dev", "veth0")
        c.ip("-6", "addr", "add", f"{lab.c6}/64", "dev", "veth0", "nodad")
        a.ip("link", "set", "veth0", "up")
        a.ip("link", "set", "veth1", "up")
        b.ip("link", "set", "veth0", "up")
        c.ip("link", "set", "veth0", "up")
        # C answers no echo itself: a userspace responder does, with a delay
        c.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
        c.sysctl("net.ipv6.icmp.echo_ignore_all", "1")
        # dead destinations in A: an unreachable route (send fails) and a blackhole route (silently dropped)
        a.ip("route", "add", "unreachable", "198.19.1.0/24")
        a.ip("route", "add", "blackhole", "198.19.2.0/24")
        # name resolution inside A only: `ip netns exec` bind-mounts these over /etc/hosts and /etc/resolv.conf;
        # the resolver points at A's own loopback, where nothing listens, so unknown names fail at once
        # Neighbour discovery right after a link comes up can lose its first solicitation: wait until
        # every live address of B answers once (fping retries), so tests measure steady-state behaviour.
        # C is checked by its own tests (its responder is not running yet).
        live = [*lab.B4_LIVE, *lab.b6_live, "fe80::2%veth0"]
        p = a.exec("fping", "-q", "-r", "30", "-t", "100", "-i", "1", *live, check=False)
        if p.returncode != 0:
            raise RuntimeError(f"namespace addresses did not become reachable: {p.stderr.strip()[:500]}")
        etc = Path("/etc/netns") / a.name
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n::1 localhost\n198.18.0.3 alpha.iwtest\n{v6}::3 beta6.iwtest\n")
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions attempts:1 timeout:1\n")
    except BaseException:
        for ns in created:
            ns.delete()
        raise
    return lab


@pytest.fixture(scope="session")
def ping_lab() -> Iterator[PingLab]:
    require_netns_tools("nft", "setpriv", "sysctl")
    lab = make_lab()
    try:
        yield lab
    finally:
        for ns in (lab.a, lab.b, lab.c):
            ns.delete()
