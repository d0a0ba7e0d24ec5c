"""Host resource checks (cpu, memory, disk, network, system) and their shared helpers: /proc reads, counter rates, glob filters."""

from __future__ import annotations

import fnmatch
import os
import re
import threading
import time
from typing import Hashable, Sequence

from checks.config import ConfigError

PROC = "/proc"


def read_bytes(path: str) -> bytes:
    """Read a whole (small) /proc or /sys file in one go, without Python's text layer."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks) if len(chunks) != 1 else chunks[0]
    finally:
        os.close(fd)


class ProcFile:
    """A /proc file kept open and re-read from the start on every call (saves the open/close and path
    lookup, which dominate the cost of reading a small /proc file).

    `single=True` is for files the kernel renders in one piece (/proc/stat, /proc/meminfo,
    /proc/loadavg, /proc/uptime): one pread() at offset 0 returns everything when the buffer is
    larger than the text, and the buffer grows when it is not. Other seq files (/proc/diskstats,
    /proc/net/dev) hand out about a page per read(), so they are read sequentially until EOF.
    The file is reopened after an error. Safe to call from one thread at a time per instance.
    """

    __slots__ = ("path", "single", "_fd", "_size")

    def __init__(self, path: str, *, single: bool = False) -> None:
        self.path = path
        self.single = single
        self._fd = -1
        self._size = 16384

    def read(self) -> bytes:
        fd = self._fd
        if fd < 0:
            fd = self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if self.single:
                while True:
                    b = os.pread(fd, self._size, 0)
                    if len(b) < self._size:
                        return b
                    self._size *= 4
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while b := os.read(fd, self._size):
                chunks.append(b)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            finally:
                self._fd = -1

    def __del__(self) -> None:
        self.close()


class Rates:
    """Per-key counter state turning monotonic counters into per-second rates.

    `update(key, now, values)` returns the rates of `values` since the previous call for the same key,
    or None when there is no usable previous reading: the first call for a key, a time that did not
    advance, or any counter of the key that went backwards (reboot, 32-bit wrap, device re-created).
    Skipping the whole interval for the key on a reset means a reset never yields a negative rate or a
    huge spike; the new values become the baseline for the next interval.
    `now` must come from time.monotonic().
    """

    __slots__ = ("_prev", "_seen")

    def __init__(self) -> None:
        self._prev: dict[Hashable, tuple[float, Sequence[int]]] = {}
        self._seen: set[Hashable] = set()

    def update(self, key: Hashable, now: float, values: Sequence[int]) -> list[float] | None:
        got = self.deltas(key, now, values)
        if got is None:
            return None
        dt, ds = got
        return [d / dt for d in ds]

    def deltas(self, key: Hashable, now: float, values: Sequence[int]) -> tuple[float, list[int]] | None:
        """Like update(), but returns (dt, raw deltas) for derived values (ratios, averages)."""
        self._seen.add(key)
        prev = self._prev.get(key)
        self._prev[key] = (now, values)
        if prev is None:
            return None
        t0, old = prev
        dt = now - t0
        if dt <= 0 or len(old) != len(values):
            return None
        out = []
        for a, b in zip(old, values):
            d = b - a
            if d < 0:
                return None
            out.append(d)
        return dt, out

    def prune(self) -> None:
        """Forget keys not updated since the last prune (vanished interfaces/devices); call once per run."""
        if len(self._seen) != len(self._prev):
            for k in [k for k in self._prev if k not in self._seen]:
                del self._prev[k]
        self._seen = set()

    def __len__(self) -> int:
        return len(self._prev)


class GlobFilter:
    """Include/exclude shell-glob filter (fnmatch, case-sensitive; `*` also matches `/`), decisions cached.

    A name passes when it matches at least one include pattern (or the include list is empty) and no
    exclude pattern. Patterns are compiled once into one regular expression per list.
    """

    __slots__ = ("_inc", "_exc", "_cache")
    _CACHE_MAX = 4096

    def __init__(self, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> None:
        self._inc = _compile(include)
        self._exc = _compile(exclude)
        self._cache: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        r = self._cache.get(name)
        if r is None:
            r = (self._inc is None or self._inc.match(name) is not None) and (
                self._exc is None or self._exc.match(name) is None
            )
            if len(self._cache) >= self._CACHE_MAX:
                self._cache.clear()
            self._cache[name] = r
        return r


def _compile(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def validate_globs(field: str, patterns: Sequence[str]) -> None:
    """Raise ConfigError naming the option and index when a pattern is empty."""
    for i, p in enumerate(patterns):
        if not p or not p.strip():
            raise ConfigError(f"{field}[{i}]", "empty glob pattern")


_stat_cache: tuple[float, bytes] | None = None
_stat_file = ProcFile("/proc/stat", single=True)
_stat_lock = threading.Lock()


def proc_stat(used: float = -1.0, max_age: float = 1.0) -> tuple[float, bytes]:
    """(monotonic read time, contents of /proc/stat), shared by the cpu and system checks.

    On hosts with many CPUs and IRQs the kernel spends real time formatting the `intr` line, so a
    read younger than `max_age` seconds is reused, unless the caller already used that very read
    (`used` = the read time it got last). Callers compute rates against the returned read time,
    never against their own clock, so sharing a read never skews a rate.
    """
    global _stat_cache
    c = _stat_cache
    if c is not None and c[0] != used and 0 <= time.monotonic() - c[0] < max_age:
        return c
    with _stat_lock:
        t = time.monotonic()
        _stat_cache = c = (t, _stat_file.read())
    return c
