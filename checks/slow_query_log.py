"""Slow-query logs (MySQL/MariaDB slow log, PostgreSQL log_min_duration_statement) → SQL timings by fingerprint."""

from __future__ import annotations

import heapq
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from checks.base import Check
from checks.catalogue import MetricSpec
from checks.config import ByteSize, ConfigError
from checks.model import APP_PERF, Event, Reading, Sample
from checks.normalize import sql_fingerprint, sql_normalize
from checks.sketch import Sketch
from checks.tailing import LineGrouper, TailedFilesConfig, TailingCheck

_MY_START = ("# Time:", "# User@Host:")
_MY_QT = re.compile(r"^# Query_time:\s*(?P<qt>[\d.]+)\s+Lock_time:\s*(?P<lt>[\d.]+)(?:\s+Rows_sent:\s*(?P<rs>\d+))?(?:\s+Rows_examined:\s*(?P<re>\d+))?")
_MY_SKIP = re.compile(r"^(?:use \S+;|SET timestamp=\d+;)$", re.IGNORECASE)
_MY_NOISE = re.compile(r"^(?:\S+, Version: .*started with:|Tcp port: |Time\s+Id\s+Command)")
_MY_TS = re.compile(r"^SET timestamp=(\d+);", re.IGNORECASE)
_MY_SCHEMA = re.compile(r"Schema:\s*(\S+)")
_PG = re.compile(r"duration: (?P<ms>[\d.]+) ms\s+(?:statement|execute [^:]*): (?P<sql>.*)$")
_PG_TS = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?)")


class SlowLogGrouper(LineGrouper):
    """Splits a slow log into entries: MySQL `# Time/# User@Host ... statement;` blocks, PostgreSQL lines
    with their tab-indented continuation lines."""

    def __init__(self) -> None:
        super().__init__()
        self._stmt = False

    def feed(self, ln: str) -> str | None:
        starts = False
        if ln.startswith(_MY_START):
            starts = self._stmt or not any(x.startswith(_MY_START) for x in self.lines)
        elif ln.startswith("#"):
            starts = self._stmt
        elif ln[:1] in ("\t", " ") and self.lines:
            starts = False
        elif _MY_NOISE.match(ln) or "duration:" in ln or " LOG: " in ln or " ERROR: " in ln or " DETAIL: " in ln:
            starts = True
        elif not self.lines:
            starts = True
        done = None
        if starts and self.lines:
            done = self.take()
        if not ln.startswith("#") and self.lines and self.lines[0].startswith("#") and not _MY_SKIP.match(ln):
            self._stmt = True
        self.lines.append(ln)
        return done

    def _reset(self) -> None:
        self._stmt = False


@dataclass(slots=True)
class SlowQuery:
    duration: float
    statement: str
    ts: float | None = None
    schema: str = ""
    lock_time: float = 0.0
    rows_examined: int | None = None


def parse_entry(text: str) -> SlowQuery | None:
    """One MySQL/MariaDB slow-log entry or one PostgreSQL duration line (with continuation lines)."""
    if text.startswith("#"):
        qt = None
        ts = None
        schema = ""
        stmt: list[str] = []
        lock = 0.0
        rows = None
        for ln in text.splitlines():
            if ln.startswith("#"):
                m = _MY_QT.match(ln)
                if m:
                    qt = float(m.group("qt"))
                    lock = float(m.group("lt"))
                    rows = int(m.group("re")) if m.group("re") else None
                sm = _MY_SCHEMA.search(ln)
                if sm:
                    schema = sm.group(1)
                continue
            tm = _MY_TS.match(ln.strip())
            if tm:
                ts = float(tm.group(1))
                continue
            if _MY_SKIP.match(ln.strip()):
                if ln.lower().startswith("use "):
                    schema = schema or ln.strip()[4:-1]
                continue
            stmt.append(ln)
        sql = "\n".join(stmt).strip()
        if qt is None or not sql or sql.lower().startswith(("# administrator command", "administrator command")):
            return None
        return SlowQuery(qt, sql, ts, schema, lock, rows)
    first, _, rest = text.partition("\n")
    m = _PG.search(first)
    if not m:
        return None
    sql = m.group("sql")
    if rest:
        sql += "\n" + "\n".join(ln.strip() for ln in rest.splitlines() if ln[:1] in ("\t", " "))
    ts = None
    tm = _PG_TS.match(first)
    if tm:
        try:
            import datetime as dt

            ts = dt.datetime.fromisoformat(tm.group("ts")).replace(tzinfo=dt.timezone.utc).timestamp() if "UTC" in first[:40] else None
        except ValueError:
            ts = None
    return SlowQuery(float(m.group("ms")) / 1000.0, sql.strip(), ts)


@dataclass(frozen=True, kw_only=True)
class SlowQueryLogConfig(TailedFilesConfig):
    """`paths`: slow-log files, e.g. /var/log/mysql/mariadb-slow.log, /var/log/postgresql/*.log."""

    format: Literal["auto", "mysql", "postgresql"] = "auto"
    #: tag `db` of the timings (default: mysql or postgresql by the entry's format)
    db: str = ""
    service: str = ""
    module: str = ""
    #: slowest samples kept per fingerprint and run (statements redacted)
    slowest_samples: int = 3
    max_line_bytes: ByteSize = 1024 * 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.slowest_samples <= 100:
            raise ConfigError("slowest_samples", "must be between 0 and 100")


@dataclass(slots=True)
class _Agg:
    sketch: Sketch = field(default_factory=Sketch)
    errors: int = 0
    slowest: list[tuple[float, float, str]] = field(default_factory=list)
    statement: str = ""
    rows_examined: int = 0


class SlowQueryLogCheck(TailingCheck, Check[SlowQueryLogConfig]):
    """Follows slow-query logs; per run and SQL fingerprint: an `app.perf` Event (sketch, slowest redacted samples)."""

    Config = SlowQueryLogConfig
    METRICS = (
        MetricSpec("slow_query_log.queries", "count", "gauge", "slow queries logged during the run", ("db", "fingerprint")),
        MetricSpec("slow_query_log.duration_max_seconds", "seconds", "gauge", "slowest logged query of the run", ("db", "fingerprint")),
    )

    def __init__(self, config: SlowQueryLogConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        self.tailer = self._tailer(config, state_dir, grouper=SlowLogGrouper)

    def _collect(self) -> list[Reading]:
        now = time.time()
        aggs: dict[tuple[str, str], _Agg] = {}
        for _path, rec in self.tailer.poll():
            q = parse_entry(rec)
            if q is None:
                continue
            kind = "mysql" if rec.startswith("#") else "postgresql"
            if self.config.format != "auto" and self.config.format != kind:
                continue
            db = self.config.db or kind
            fp, norm = sql_fingerprint(q.statement)
            a = aggs.get((db, fp))
            if a is None:
                a = aggs[(db, fp)] = _Agg(statement=norm)
            a.sketch.add(q.duration)
            a.rows_examined += q.rows_examined or 0
            item = (q.duration, q.ts or now, "")
            if len(a.slowest) < self.config.slowest_samples or (a.slowest and q.duration > a.slowest[0][0]):
                item = (q.duration, q.ts or now, sql_normalize(q.statement, 8192))
                if len(a.slowest) < self.config.slowest_samples:
                    heapq.heappush(a.slowest, item)
                else:
                    heapq.heapreplace(a.slowest, item)
        self.tailer.save()
        out: list[Reading] = []
        for (db, fp), a in aggs.items():
            sk = a.sketch
            tags = {"db": db, "fingerprint": fp, "module": self.config.module or "unknown"}
            if self.config.service:
                tags["service"] = self.config.service
            out.append(Sample("slow_query_log.queries", float(sk.count), now, {"db": db, "fingerprint": fp}))
            out.append(Sample("slow_query_log.duration_max_seconds", sk.max, now, {"db": db, "fingerprint": fp}))
            data: dict[str, Any] = {
                "kind": "sql", "count": sk.count, "errors": 0, "sum": sk.sum, "min": sk.min, "max": sk.max,
                "sketch": sk.to_json(), "statement": a.statement, "fingerprint": fp, "source": "slow_log",
                "rows_examined": a.rows_examined,
                "slowest": [{"duration": d, "ts": t, "statement": s} for d, t, s in sorted(a.slowest, reverse=True)],
            }
            out.append(Event(APP_PERF, now, f"{sk.count} slow x {a.statement[:200]}", tags, data))
        return out
