"""Agent-side aggregation of application timings and exceptions per interval (bounded memory, exact counts).

Timings are summarised per interval (`flush`). Exceptions also have a fast lane (`flush_exceptions`, called
by the local ingest about once a second): each group with new occurrences becomes one `app.exception` Event
carrying the exact count since the previous flush; only the first event of a group per full interval carries
the sample stack and frames, so a storm costs one event per group per fast flush and one stack per interval.
"""

from __future__ import annotations

import heapq
import re
import time
from dataclasses import dataclass, field
from typing import Any

from checks.catalogue import MetricSpec, register_metrics
from checks.model import APP_EXCEPTION, APP_PERF, Event, Reading, Sample
from checks.normalize import exception_fingerprint, normalize_message, sql_fingerprint, sql_normalize
from checks.sketch import Sketch

REQUEST = "request"
SQL = "sql"
SPAN = "span"
KINDS = (REQUEST, SQL, SPAN)

#: sample metric prefix per timing kind
_PREFIX = {REQUEST: "app.request", SQL: "app.sql", SPAN: "app.span"}

APP_METRICS: tuple[MetricSpec, ...] = tuple(
    spec
    for kind, (prefix, what, tags) in {
        REQUEST: ("app.request", "API requests", ("service", "module", "endpoint")),
        SQL: ("app.sql", "SQL statements", ("service", "module", "db", "fingerprint")),
        SPAN: ("app.span", "custom spans", ("service", "module", "endpoint")),
    }.items()
    for spec in (
        MetricSpec(f"{prefix}.count", "count", "gauge", f"{what} completed in the agent's aggregation interval", tags),
        MetricSpec(f"{prefix}.errors", "count", "gauge", f"{what} that failed in the interval", tags),
        MetricSpec(f"{prefix}.error_ratio", "ratio", "gauge", f"share of the {what} of the interval that failed (0..1)", tags),
        MetricSpec(f"{prefix}.duration_avg_seconds", "seconds", "gauge", f"mean duration of {what} in the interval", tags),
        MetricSpec(f"{prefix}.duration_max_seconds", "seconds", "gauge", f"slowest of the {what} in the interval", tags),
        MetricSpec(f"{prefix}.duration_p50_seconds", "seconds", "gauge", f"median duration of {what} (sketch, ±1%)", tags),
        MetricSpec(f"{prefix}.duration_p95_seconds", "seconds", "gauge", f"95th percentile duration of {what} (sketch, ±1%)", tags),
        MetricSpec(f"{prefix}.duration_p99_seconds", "seconds", "gauge", f"99th percentile duration of {what} (sketch, ±1%)", tags),
    )
) + (
    MetricSpec("app.ingest.events_total", "count", "counter", "events accepted by the agent's local ingest", ("source",)),
    MetricSpec("app.ingest.dropped_total", "count", "counter", "events dropped by the agent's local ingest (limits)", ("reason",)),
)
register_metrics(*APP_METRICS)

MAX_STATEMENT = 8192
#: plain literals outside identifiers: a cheap cache key for fingerprints (never a fingerprint itself)
_LITERALS = re.compile(r"(?<![\w$.])-?\d+(?:\.\d+)?(?![\w.])|'[^'\\]*'")


@dataclass(slots=True)
class PerfStat:
    """One (kind, service, module, endpoint | db+fingerprint) series within one interval."""

    sketch: Sketch = field(default_factory=Sketch)
    count: int = 0
    errors: int = 0
    sum: float = 0.0
    min: float = float("inf")
    max: float = 0.0
    #: min-heap of (duration, ts, redacted statement or "") — the few slowest samples
    slowest: list[tuple[float, float, str]] = field(default_factory=list)
    statement: str = ""


@dataclass(slots=True)
class ExcStat:
    """One exception group (fingerprint) within one interval: exact count, one sample."""

    count: int
    first_ts: float
    last_ts: float
    sample: dict[str, Any]
    tags: dict[str, str]
    hosts: set[str] = field(default_factory=set)


class Aggregator:
    """Collects timings and exceptions; `flush()` returns Samples and Events for the interval and resets.

    Memory is bounded by `max_series` perf series and `max_groups` exception groups per interval;
    what does not fit is counted in `dropped`, never silently lost.
    """

    def __init__(self, *, max_series: int = 5000, max_groups: int = 1000, slowest: int = 3) -> None:
        self.max_series = max_series
        self.max_groups = max_groups
        self.keep_slowest = slowest
        self.perf: dict[tuple[str, str, str, str, str], PerfStat] = {}
        self.excs: dict[str, ExcStat] = {}
        self.dropped: dict[str, int] = {}
        self.accepted: dict[str, int] = {}
        self._sql_cache: dict[str, tuple[str, str]] = {}
        self._exc_cache: dict[tuple[Any, ...], str] = {}
        self.started = time.time()
        self._last_counters: tuple[dict[str, int], dict[str, int]] = ({}, {})
        #: exception groups whose sample (stack, frames) already left in this interval
        self._sampled: set[str] = set()

    # ------------------------------------------------------------ adding

    def _drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def count_accepted(self, source: str, n: int) -> None:
        self.accepted[source] = self.accepted.get(source, 0) + n

    def _fingerprint(self, statement: str) -> tuple[str, str]:
        c = self._sql_cache
        fp = c.get(statement)
        if fp is None:
            # statements that differ only in plain number/string literals share one cache entry (and one fingerprint)
            key = _LITERALS.sub("?", statement) if len(statement) < 4096 else statement
            fp = c.get(key)
            if fp is None:
                fp = sql_fingerprint(statement)
                if len(c) > 20_000:
                    c.clear()
                c[key] = fp
        return fp

    def _exc_fingerprint(self, exc_type: str, message: str, frames: list[dict[str, Any]]) -> str:
        key = (exc_type, message, tuple((f.get("module"), f.get("file"), f.get("function"), f.get("in_app")) for f in frames))
        c = self._exc_cache
        fp = c.get(key)
        if fp is None:
            fp = exception_fingerprint(exc_type, message, frames)
            if len(c) > 5_000:
                c.clear()
            c[key] = fp
        return fp

    def add_timing(
        self,
        kind: str,
        duration: float,
        *,
        service: str = "",
        module: str = "",
        endpoint: str = "",
        statement: str = "",
        db: str = "",
        error: bool = False,
        ts: float | None = None,
    ) -> bool:
        """Record one request/sql/span timing; False when dropped (too many series)."""
        if kind == SQL:
            fp, norm = self._fingerprint(statement)
            key = (SQL, service, module, db, fp)
        else:
            norm = ""
            key = (kind, service, module, "", endpoint)
        st = self.perf.get(key)
        if st is None:
            if len(self.perf) >= self.max_series:
                self._drop("too_many_series")
                return False
            st = PerfStat()
            st.statement = norm
            self.perf[key] = st
        if duration < 0:
            duration = 0.0
        st.count += 1
        st.sum += duration
        if duration < st.min:
            st.min = duration
        if duration > st.max:
            st.max = duration
        if error:
            st.errors += 1
        st.sketch.add(duration)
        h = st.slowest
        if len(h) < self.keep_slowest or duration > h[0][0]:
            # the full statement, redacted: literals never leave the agent in clear
            text = sql_normalize(statement, MAX_STATEMENT) if kind == SQL else ""
            item = (duration, ts if ts is not None else time.time(), text)
            if len(h) < self.keep_slowest:
                heapq.heappush(h, item)
            else:
                heapq.heapreplace(h, item)
        return True

    def add_exception(
        self,
        exc_type: str,
        message: str,
        *,
        frames: list[dict[str, Any]] | None = None,
        stack: str = "",
        count: int = 1,
        service: str = "",
        module: str = "",
        endpoint: str = "",
        logger: str = "",
        ts: float | None = None,
        tags: dict[str, str] | None = None,
        source: str = "",
    ) -> bool:
        """Record `count` identical exceptions; the first one of the interval keeps its stack as the sample."""
        frames = frames or []
        try:
            fp = self._exc_fingerprint(exc_type, message, frames)
        except TypeError:  # unhashable frame values
            fp = exception_fingerprint(exc_type, message, frames)
        ts = ts if ts is not None else time.time()
        st = self.excs.get(fp)
        if st is None:
            if len(self.excs) >= self.max_groups:
                self._drop("too_many_exception_groups", count)
                return False
            sample = {
                "type": exc_type[:300],
                "message": message[:2000],
                "normalized_message": normalize_message(message),
                "frames": [_frame(f) for f in frames[-50:]],
                "stack": stack[-16000:],
                "endpoint": endpoint,
                "logger": logger,
                "source": source,
            }
            etags = {k: v for k, v in (tags or {}).items()}
            if service:
                etags["service"] = service
            etags["module"] = module or "unknown"
            self.excs[fp] = ExcStat(count, ts, ts, sample, etags)
            return True
        st.count += count
        if ts < st.first_ts:
            st.first_ts = ts
        if ts > st.last_ts:
            st.last_ts = ts
        return True

    def __len__(self) -> int:
        return len(self.perf) + len(self.excs)

    # ------------------------------------------------------------ flushing

    def flush(self, now: float | None = None) -> list[Reading]:
        """Readings for everything since the last flush; resets the interval."""
        now = now if now is not None else time.time()
        out: list[Reading] = []
        interval = max(now - self.started, 0.0)
        for (kind, service, module, db, name), st in self.perf.items():
            tags = {"module": module or "unknown"}
            if service:
                tags["service"] = service
            if kind == SQL:
                tags["db"] = db or "unknown"
                tags["fingerprint"] = name
            else:
                tags["endpoint"] = name[:256] or "unknown"
            p = _PREFIX[kind]
            sk = st.sketch
            q50, q95, q99 = sk.quantile(0.5), sk.quantile(0.95), sk.quantile(0.99)
            out.append(Sample(f"{p}.count", float(st.count), now, dict(tags)))
            out.append(Sample(f"{p}.errors", float(st.errors), now, dict(tags)))
            out.append(Sample(f"{p}.error_ratio", st.errors / st.count, now, dict(tags)))
            out.append(Sample(f"{p}.duration_avg_seconds", st.sum / st.count, now, dict(tags)))
            out.append(Sample(f"{p}.duration_max_seconds", st.max, now, dict(tags)))
            out.append(Sample(f"{p}.duration_p50_seconds", q50 or 0.0, now, dict(tags)))
            out.append(Sample(f"{p}.duration_p95_seconds", q95 or 0.0, now, dict(tags)))
            out.append(Sample(f"{p}.duration_p99_seconds", q99 or 0.0, now, dict(tags)))
            data: dict[str, Any] = {
                "kind": kind,
                "count": st.count,
                "errors": st.errors,
                "sum": st.sum,
                "min": st.min,
                "max": st.max,
                "interval": interval,
                "sketch": sk.to_json(),
                "slowest": [
                    {"duration": d, "ts": t, **({"statement": s} if s else {})} for d, t, s in sorted(st.slowest, reverse=True)
                ],
            }
            if kind == SQL:
                data["statement"] = st.statement
                data["fingerprint"] = name
                msg = f"{st.count} x {st.statement[:200]}"
            else:
                data["endpoint"] = name
                msg = f"{st.count} x {name}"
            out.append(Event(APP_PERF, now, msg, dict(tags), data))
        out.extend(self._exception_events())
        snap = (dict(self.accepted), dict(self.dropped))
        if snap != self._last_counters:  # cumulative counters: shipped when they move
            self._last_counters = snap
            for src, n in self.accepted.items():
                out.append(Sample("app.ingest.events_total", float(n), now, {"source": src}))
            for reason, n in self.dropped.items():
                out.append(Sample("app.ingest.dropped_total", float(n), now, {"reason": reason}))
        self.perf = {}
        self.started = now
        self._sampled = set()
        return out

    def flush_exceptions(self) -> list[Reading]:
        """The fast lane: one `app.exception` Event per group seen since the last flush (exact counts), then reset.

        Timings stay for `flush()`. Bounded: at most `max_groups` events per call whatever the storm.
        """
        return self._exception_events()

    def _exception_events(self) -> list[Reading]:
        out: list[Reading] = []
        sampled = self._sampled
        if len(sampled) > 10 * self.max_groups:  # many short-lived groups: forget, at worst a stack is resent
            sampled.clear()
        for fp, ex in self.excs.items():
            s = ex.sample
            if fp in sampled:  # the stack of this group already left in this interval
                s = {k: v for k, v in s.items() if k not in ("frames", "stack")}
            else:
                sampled.add(fp)
            data = {
                "fingerprint": fp,
                "count": ex.count,
                "first_ts": ex.first_ts,
                "last_ts": ex.last_ts,
                **s,
            }
            msg = f"{s['type']}: {s['message']}"[:2000]
            out.append(Event(APP_EXCEPTION, ex.last_ts, msg, dict(ex.tags), data))
        self.excs = {}
        return out


def _frame(f: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in ("file", "line", "function", "module", "in_app"):
        v = f.get(k)
        if v is not None:
            out[k] = v if not isinstance(v, str) else v[:300]
    return out
