"""In-memory recent-data windows the rules read: per-series points, host last-seen times, exception counts."""

from __future__ import annotations

import fnmatch
import math
from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

LabelKey = tuple[tuple[str, str], ...]

# Beyond this a window is served from the coarse (down-sampled) buffer.
RAW_MAX_WINDOW = 3600.0
COARSE_POINTS = 720


class Points:
    """Time-ordered (ts, value) points in two parallel lists; old points trimmed from the front."""

    __slots__ = ("ts", "vs", "start")

    def __init__(self) -> None:
        self.ts: list[float] = []
        self.vs: list[float] = []
        self.start = 0

    def add(self, ts: float, v: float) -> None:
        tl = self.ts
        if not tl or ts > tl[-1]:
            tl.append(ts)
            self.vs.append(v)
            return
        if ts == tl[-1]:
            self.vs[-1] = v
            return
        i = bisect_left(tl, ts, self.start)
        if i < len(tl) and tl[i] == ts:
            self.vs[i] = v
            return
        if i < self.start:
            return
        tl.insert(i, ts)
        self.vs.insert(i, v)

    def trim(self, cutoff: float) -> None:
        tl = self.ts
        s = self.start
        n = len(tl)
        if s < n and tl[s] < cutoff:
            s = bisect_left(tl, cutoff, s)
        if s > 64 and s * 2 > n:
            del tl[:s]
            del self.vs[:s]
            s = 0
        self.start = s

    def since(self, t0: float) -> tuple[list[float], list[float]]:
        i = bisect_left(self.ts, t0, self.start)
        return self.ts[i:], self.vs[i:]

    def last(self) -> tuple[float, float] | None:
        if len(self.ts) > self.start:
            return self.ts[-1], self.vs[-1]
        return None

    def __len__(self) -> int:
        return len(self.ts) - self.start


class Series:
    """One metric series (metric name + labels) with a raw and, when long windows need it, a coarse buffer."""

    __slots__ = ("metric", "labels", "key", "raw", "coarse", "coarse_res", "last_ts", "first_ts")

    def __init__(self, metric: str, labels: dict[str, str], key: LabelKey, coarse_res: float | None) -> None:
        self.metric = metric
        self.labels = labels
        self.key = key
        self.raw = Points()
        self.coarse: Points | None = Points() if coarse_res else None
        self.coarse_res = coarse_res or 0.0
        self.last_ts = 0.0
        self.first_ts = math.inf

    def add(self, ts: float, v: float) -> None:
        self.raw.add(ts, v)
        c = self.coarse
        if c is not None:
            last = c.last()
            if last is None or ts - last[0] >= self.coarse_res:
                c.add(ts, v)
        if ts > self.last_ts:
            self.last_ts = ts
        if ts < self.first_ts:
            self.first_ts = ts

    def window(self, t0: float, window: float) -> tuple[list[float], list[float]]:
        if window > RAW_MAX_WINDOW and self.coarse is not None:
            ts, vs = self.coarse.since(t0)
            # the newest raw point makes the tail current
            last = self.raw.last()
            if last is not None and (not ts or last[0] > ts[-1]):
                ts = ts + [last[0]]
                vs = vs + [last[1]]
            return ts, vs
        return self.raw.since(t0)


@dataclass(slots=True)
class Need:
    """How much history a metric needs: raw retention and, for long windows, coarse retention/resolution."""

    raw: float = 0.0
    coarse: float = 0.0

    def merge(self, window: float) -> None:
        if window > RAW_MAX_WINDOW:
            self.coarse = max(self.coarse, window)
        else:
            self.raw = max(self.raw, window)

    @property
    def coarse_res(self) -> float | None:
        if self.coarse <= 0:
            return None
        return max(10.0, self.coarse / COARSE_POINTS)


class MetricStore:
    """All cached series of one metric name."""

    __slots__ = ("name", "need", "series", "by_key", "epoch")

    def __init__(self, name: str, need: Need) -> None:
        self.name = name
        self.need = need
        self.series: list[Series] = []
        self.by_key: dict[LabelKey, Series] = {}
        #: bumped when series are removed, so rule match caches rescan
        self.epoch = 0

    def get(self, labels: dict[str, str]) -> Series:
        key = tuple(sorted(labels.items()))
        s = self.by_key.get(key)
        if s is None:
            s = Series(self.name, dict(labels), key, self.need.coarse_res)
            self.by_key[key] = s
            self.series.append(s)
        return s

    def trim(self, now: float, forget_after: float) -> None:
        raw_cut = now - self.need.raw - 60.0
        coarse_cut = now - self.need.coarse - 600.0
        dead = False
        for s in self.series:
            s.raw.trim(raw_cut)
            if s.coarse is not None:
                s.coarse.trim(coarse_cut)
            if now - s.last_ts > forget_after:
                dead = True
        if dead:
            keep = [s for s in self.series if now - s.last_ts <= forget_after]
            self.series = keep
            self.by_key = {s.key: s for s in keep}
            self.epoch += 1


class MetricCache:
    """Series of the metrics the rules reference (exact names or globs such as `*.up`)."""

    def __init__(self) -> None:
        self.stores: dict[str, MetricStore] = {}
        self.needs: dict[str, Need] = {}
        self.globs: dict[str, Need] = {}
        self._name_memo: dict[str, MetricStore | None] = {}
        self.forget_after = 86400.0

    def configure(self, needs: dict[str, Need], forget_after: float) -> None:
        """Set which metrics are kept (on rule load/reload). Existing data of kept metrics stays."""
        self.forget_after = forget_after
        self.needs = {k: v for k, v in needs.items() if not _is_glob(k)}
        self.globs = {k: v for k, v in needs.items() if _is_glob(k)}
        self._name_memo.clear()
        for name in list(self.stores):
            need = self._need_for(name)
            if need is None:
                del self.stores[name]
            else:
                st = self.stores[name]
                if need.coarse_res != st.need.coarse_res:
                    for s in st.series:
                        if need.coarse_res and s.coarse is None:
                            s.coarse = Points()
                        s.coarse_res = need.coarse_res or 0.0
                st.need = need

    def _need_for(self, name: str) -> Need | None:
        need = self.needs.get(name)
        matched = [n for g, n in self.globs.items() if fnmatch.fnmatchcase(name, g)]
        if need is None and not matched:
            return None
        out = Need(need.raw if need else 0.0, need.coarse if need else 0.0)
        for n in matched:
            out.raw = max(out.raw, n.raw)
            out.coarse = max(out.coarse, n.coarse)
        return out

    def store_for(self, name: str) -> MetricStore | None:
        memo = self._name_memo
        if name in memo:
            return memo[name]
        st = self.stores.get(name)
        if st is None:
            need = self._need_for(name)
            if need is not None:
                st = MetricStore(name, need)
                self.stores[name] = st
        memo[name] = st
        return st

    def wants(self, name: str) -> bool:
        return self.store_for(name) is not None

    def add(self, name: str, labels: dict[str, str], ts: float, value: float) -> None:
        st = self.store_for(name)
        if st is not None:
            st.get(labels).add(ts, value)

    def stores_matching(self, pattern: str) -> list[MetricStore]:
        if not _is_glob(pattern):
            st = self.stores.get(pattern)
            return [st] if st is not None else []
        return [st for n, st in self.stores.items() if fnmatch.fnmatchcase(n, pattern)]

    def trim(self, now: float) -> None:
        for st in self.stores.values():
            st.trim(now, self.forget_after)

    def series_count(self) -> int:
        return sum(len(st.series) for st in self.stores.values())


def _is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


class HostSeen:
    """Last time each agent (host) delivered a batch."""

    def __init__(self) -> None:
        self.last_seen: dict[str, float] = {}

    def seen(self, host: str, ts: float) -> None:
        if ts > self.last_seen.get(host, 0.0):
            self.last_seen[host] = ts

    def forget(self, host: str) -> None:
        self.last_seen.pop(host, None)

    def items(self) -> Iterator[tuple[str, float]]:
        return iter(list(self.last_seen.items()))


class Counter1s:
    """Occurrence counts in one-second buckets (bounded by the window length, whatever the rate)."""

    __slots__ = ("buckets", "labels", "last_ts")

    def __init__(self, labels: dict[str, str]) -> None:
        self.buckets: list[list[float]] = []  # [second, count], ordered
        self.labels = labels
        self.last_ts = 0.0

    def add(self, ts: float, n: float) -> None:
        sec = math.floor(ts)
        b = self.buckets
        if b and b[-1][0] == sec:
            b[-1][1] += n
        elif not b or sec > b[-1][0]:
            b.append([sec, n])
        else:
            i = bisect_left(b, [sec, -math.inf])
            if i < len(b) and b[i][0] == sec:
                b[i][1] += n
            else:
                insort(b, [sec, n])
        if ts > self.last_ts:
            self.last_ts = ts

    def count_since(self, t0: float) -> float:
        b = self.buckets
        i = bisect_left(b, [math.floor(t0), -math.inf])
        return sum(x[1] for x in b[i:])

    def trim(self, cutoff: float) -> None:
        b = self.buckets
        i = bisect_left(b, [math.floor(cutoff), -math.inf])
        if i:
            del b[:i]

    def oldest(self) -> float | None:
        return self.buckets[0][0] if self.buckets else None


def points_from(items: Iterable[Any]) -> list[tuple[float, float]]:
    return [(float(t), float(v)) for t, v in items]
