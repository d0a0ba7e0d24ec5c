"""Exceptions/performance database: schema, per-batch writes (inside the ingest transaction) and read queries."""

from __future__ import annotations

import math
import sqlite3
import time
from typing import Any

import orjson

from checks.model import APP_EXCEPTION, APP_PERF, Batch
from checks.normalize import exception_fingerprint, normalize_message
from checks.sketch import Sketch

# Portable SQL: the same statements run on PostgreSQL with `INTEGER PRIMARY KEY` → `BIGSERIAL PRIMARY KEY`
# and REAL → DOUBLE PRECISION; upserts use the standard ON CONFLICT form both engines share.
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS app_exc_groups (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        message TEXT NOT NULL,
        normalized_message TEXT NOT NULL DEFAULT '',
        module TEXT NOT NULL,
        service TEXT NOT NULL DEFAULT '',
        endpoint TEXT NOT NULL DEFAULT '',
        language TEXT NOT NULL DEFAULT '',
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        count BIGINT NOT NULL,
        sample_stack TEXT NOT NULL DEFAULT '',
        sample_frames TEXT NOT NULL DEFAULT '[]',
        sample_host TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX IF NOT EXISTS app_exc_groups_last ON app_exc_groups (last_seen)",
    "CREATE INDEX IF NOT EXISTS app_exc_groups_module ON app_exc_groups (module, last_seen)",
    """CREATE TABLE IF NOT EXISTS app_exc_hosts (
        group_id BIGINT NOT NULL,
        host TEXT NOT NULL,
        count BIGINT NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        PRIMARY KEY (group_id, host)
    )""",
    """CREATE TABLE IF NOT EXISTS app_exc_counts (
        group_id BIGINT NOT NULL,
        bucket BIGINT NOT NULL,
        host TEXT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (group_id, bucket, host)
    )""",
    "CREATE INDEX IF NOT EXISTS app_exc_counts_bucket ON app_exc_counts (bucket)",
    """CREATE TABLE IF NOT EXISTS app_exc_occurrences (
        id INTEGER PRIMARY KEY,
        group_id BIGINT NOT NULL,
        ts REAL NOT NULL,
        host TEXT NOT NULL,
        service TEXT NOT NULL DEFAULT '',
        endpoint TEXT NOT NULL DEFAULT '',
        count BIGINT NOT NULL,
        message TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX IF NOT EXISTS app_exc_occ_group ON app_exc_occurrences (group_id, ts)",
    """CREATE TABLE IF NOT EXISTS app_perf (
        kind TEXT NOT NULL,
        service TEXT NOT NULL,
        module TEXT NOT NULL,
        db TEXT NOT NULL,
        name TEXT NOT NULL,
        bucket BIGINT NOT NULL,
        count BIGINT NOT NULL,
        errors BIGINT NOT NULL,
        sum REAL NOT NULL,
        min REAL NOT NULL,
        max REAL NOT NULL,
        sketch TEXT NOT NULL,
        slowest TEXT NOT NULL DEFAULT '[]',
        statement TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (kind, service, module, db, name, bucket)
    )""",
    "CREATE INDEX IF NOT EXISTS app_perf_bucket ON app_perf (kind, bucket)",
)


def migrate(conn: sqlite3.Connection) -> None:
    for stmt in SCHEMA:
        conn.execute(stmt)


def _s(v: Any, n: int = 2000) -> str:
    return v[:n] if isinstance(v, str) else ("" if v is None else str(v)[:n])


def _num(v: Any, default: float = 0.0) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return default
    return float(v)


class Writer:
    """Applies the app.exception / app.perf events of one batch; call inside the ingest transaction."""

    def __init__(self, bucket: float, keep_slowest: int = 5, max_occurrences: int = 200) -> None:
        self.bucket = bucket
        self.keep_slowest = keep_slowest
        self.max_occurrences = max_occurrences
        self.invalid = 0
        self._occ_writes = 0

    def _bucket(self, ts: float) -> int:
        return int(ts // self.bucket * self.bucket)

    def apply(self, conn: sqlite3.Connection, batch: Batch) -> dict[tuple[str, str], int]:
        """Writes the batch's rows; returns exception counts per (module, service) for the time series."""
        counts: dict[tuple[str, str], int] = {}
        perf: dict[tuple[str, str, str, str, str, int], dict[str, Any]] = {}
        for ev in batch.events:
            if ev.kind == APP_EXCEPTION:
                try:
                    module, service, n = self._exception(conn, ev, batch)
                except (TypeError, ValueError, KeyError, AttributeError):
                    self.invalid += 1
                    continue
                counts[(module, service)] = counts.get((module, service), 0) + n
            elif ev.kind == APP_PERF:
                try:
                    self._perf_merge(perf, ev)
                except (TypeError, ValueError, KeyError, AttributeError):
                    self.invalid += 1
        for key, agg in perf.items():
            self._perf_write(conn, key, agg)
        return counts

    # ---- exceptions

    def _exception(self, conn: sqlite3.Connection, ev: Any, batch: Batch) -> tuple[str, str, int]:
        d = ev.data or {}
        t = ev.tags
        etype = _s(d.get("type") or ev.message.split(":", 1)[0] or "Exception", 300)
        msg = _s(d.get("message") if d.get("message") is not None else ev.message)
        frames = d.get("frames") if isinstance(d.get("frames"), list) else []
        frames = [f for f in frames if isinstance(f, dict)][-50:]
        fp = d.get("fingerprint")
        if not isinstance(fp, str) or not 8 <= len(fp) <= 64:
            fp = exception_fingerprint(etype, msg, frames)
        c = d.get("count", 1)
        n = c if isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 10**9 else 1
        last = _num(d.get("last_ts"), ev.ts) or ev.ts
        first = min(_num(d.get("first_ts"), ev.ts) or ev.ts, last)
        module = _s(t.get("module") or "unknown", 200)
        service = _s(t.get("service") or "", 200)
        host = _s(t.get("host") or batch.agent, 255)
        endpoint = _s(d.get("endpoint") or t.get("endpoint") or "", 256)
        stack = _s(d.get("stack") or "", 16000)
        gid = conn.execute(
            """INSERT INTO app_exc_groups (fingerprint, type, message, normalized_message, module, service, endpoint, language,
                   first_seen, last_seen, count, sample_stack, sample_frames, sample_host)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (fingerprint) DO UPDATE SET
                   count = app_exc_groups.count + excluded.count,
                   first_seen = MIN(app_exc_groups.first_seen, excluded.first_seen),
                   last_seen = MAX(app_exc_groups.last_seen, excluded.last_seen),
                   message = CASE WHEN excluded.last_seen >= app_exc_groups.last_seen THEN excluded.message ELSE app_exc_groups.message END,
                   module = CASE WHEN app_exc_groups.module IN ('', 'unknown') THEN excluded.module ELSE app_exc_groups.module END,
                   endpoint = CASE WHEN app_exc_groups.endpoint = '' THEN excluded.endpoint ELSE app_exc_groups.endpoint END,
                   sample_stack = CASE WHEN app_exc_groups.sample_stack = '' THEN excluded.sample_stack ELSE app_exc_groups.sample_stack END
               RETURNING id""",
            (fp, etype, msg, normalize_message(msg), module, service, endpoint, _s(d.get("language") or "", 32), first, last, n,
             stack, orjson.dumps(frames).decode(), host),
        ).fetchone()[0]
        conn.execute(
            """INSERT INTO app_exc_hosts (group_id, host, count, first_seen, last_seen) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (group_id, host) DO UPDATE SET count = app_exc_hosts.count + excluded.count,
                   first_seen = MIN(app_exc_hosts.first_seen, excluded.first_seen),
                   last_seen = MAX(app_exc_hosts.last_seen, excluded.last_seen)""",
            (gid, host, n, first, last),
        )
        conn.execute(
            """INSERT INTO app_exc_counts (group_id, bucket, host, count) VALUES (?, ?, ?, ?)
               ON CONFLICT (group_id, bucket, host) DO UPDATE SET count = app_exc_counts.count + excluded.count""",
            (gid, self._bucket(last), host, n),
        )
        conn.execute(
            "INSERT INTO app_exc_occurrences (group_id, ts, host, service, endpoint, count, message) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (gid, last, host, service, endpoint, n, msg[:500]),
        )
        self._occ_writes += 1
        if self._occ_writes % 50 == 0:  # keep the newest occurrences of this group only
            conn.execute(
                """DELETE FROM app_exc_occurrences WHERE group_id = ? AND id <= (
                       SELECT id FROM app_exc_occurrences WHERE group_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)""",
                (gid, gid, self.max_occurrences),
            )
        return module, service, n

    # ---- performance

    def _perf_merge(self, perf: dict[Any, dict[str, Any]], ev: Any) -> None:
        d = ev.data or {}
        t = ev.tags
        kind = _s(d.get("kind") or "request", 16)
        if kind not in ("request", "sql", "span"):
            raise ValueError("kind")
        sk = Sketch.from_json(d["sketch"])
        if sk.count < 1:
            raise ValueError("empty sketch")
        name = _s(t.get("fingerprint") or d.get("fingerprint") or "", 64) if kind == "sql" else _s(t.get("endpoint") or d.get("endpoint") or "", 256)
        key = (kind, _s(t.get("service") or "", 200), _s(t.get("module") or "unknown", 200), _s(t.get("db") or "", 64) if kind == "sql" else "",
               name, self._bucket(ev.ts))
        count = sk.count  # the sketch's count is exact
        e = d.get("errors", 0)
        errors = min(max(e, 0), count) if isinstance(e, int) and not isinstance(e, bool) else 0
        slow = [s for s in (d.get("slowest") or []) if isinstance(s, dict) and isinstance(s.get("duration"), (int, float))]
        for s in slow:
            s.setdefault("host", t.get("host", ""))
        cur = perf.get(key)
        if cur is None:
            perf[key] = {"sketch": sk, "count": count, "errors": errors, "sum": _num(d.get("sum"), sk.sum),
                         "min": _num(d.get("min"), sk.min), "max": _num(d.get("max"), sk.max), "slowest": slow,
                         "statement": _s(d.get("statement") or "", 8192)}
            return
        cur["sketch"].merge(sk)
        cur["count"] += count
        cur["errors"] += errors
        cur["sum"] += _num(d.get("sum"), sk.sum)
        cur["min"] = min(cur["min"], _num(d.get("min"), sk.min))
        cur["max"] = max(cur["max"], _num(d.get("max"), sk.max))
        cur["slowest"] = sorted(cur["slowest"] + slow, key=lambda s: -s["duration"])[: self.keep_slowest]

    def _perf_write(self, conn: sqlite3.Connection, key: tuple[Any, ...], agg: dict[str, Any]) -> None:
        row = conn.execute(
            "SELECT count, errors, sum, min, max, sketch, slowest FROM app_perf WHERE kind=? AND service=? AND module=? AND db=? AND name=? AND bucket=?",
            key,
        ).fetchone()
        sk: Sketch = agg["sketch"]
        slow = agg["slowest"]
        count, errors, total, mn, mx = agg["count"], agg["errors"], agg["sum"], agg["min"], agg["max"]
        if row is not None:
            try:
                old = Sketch.from_json(orjson.loads(row[5]))
                old.merge(sk)
                sk = old
            except ValueError:
                pass
            count += row[0]
            errors += row[1]
            total += row[2]
            mn = min(mn, row[3])
            mx = max(mx, row[4])
            slow = slow + orjson.loads(row[6])
        slow = sorted(slow, key=lambda s: -s["duration"])[: self.keep_slowest]
        conn.execute(
            """INSERT INTO app_perf (kind, service, module, db, name, bucket, count, errors, sum, min, max, sketch, slowest, statement)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (kind, service, module, db, name, bucket) DO UPDATE SET count = excluded.count,
                   errors = excluded.errors, sum = excluded.sum, min = excluded.min, max = excluded.max,
                   sketch = excluded.sketch, slowest = excluded.slowest""",
            (*key, count, errors, total, mn, mx, orjson.dumps(sk.to_json()).decode(), orjson.dumps(slow).decode(), agg["statement"]),
        )

    def prune(self, conn: sqlite3.Connection, retention: float, now: float | None = None) -> None:
        cutoff = self._bucket((now or time.time()) - retention)
        conn.execute("DELETE FROM app_exc_counts WHERE bucket < ?", (cutoff,))
        conn.execute("DELETE FROM app_exc_occurrences WHERE ts < ?", (cutoff,))
        conn.execute("DELETE FROM app_perf WHERE bucket < ?", (cutoff,))


# ---------------------------------------------------------------- reading


def _quantiles(sk: Sketch) -> dict[str, float | None]:
    return {"p50": sk.quantile(0.5), "p95": sk.quantile(0.95), "p99": sk.quantile(0.99)}


class Reader:
    """Read queries over the store database (own read-only connection; call from a worker thread)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _conn(self) -> sqlite3.Connection:
        from pathlib import Path

        conn = sqlite3.connect(Path(self.path).resolve().as_uri() + "?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def groups(self, *, start: float, end: float, module: str | None, host: str | None, service: str | None,
               sort: str, limit: int, bucket: float) -> list[dict[str, Any]]:
        where = ["c.bucket >= ?", "c.bucket < ?"]
        args: list[Any] = [int(start // bucket * bucket), end]
        if host:
            where.append("c.host = ?")
            args.append(host)
        if module:
            where.append("g.module = ?")
            args.append(module)
        if service:
            where.append("g.service = ?")
            args.append(service)
        order = {"count": "window_count DESC, g.last_seen DESC", "last_seen": "g.last_seen DESC",
                 "first_seen": "g.first_seen DESC", "total": "g.count DESC"}[sort]
        sql = f"""SELECT g.id, g.fingerprint, g.type, g.message, g.module, g.service, g.endpoint, g.language, g.first_seen,
                         g.last_seen, g.count, SUM(c.count) AS window_count, COUNT(DISTINCT c.host) AS window_hosts
                  FROM app_exc_counts c JOIN app_exc_groups g ON g.id = c.group_id
                  WHERE {' AND '.join(where)} GROUP BY g.id ORDER BY {order} LIMIT ?"""
        args.append(limit)
        with self._conn() as conn:
            rows = [dict(r) for r in conn.execute(sql, args)]
            for r in rows:
                r["hosts"] = [h[0] for h in conn.execute(
                    "SELECT host FROM app_exc_hosts WHERE group_id = ? ORDER BY count DESC LIMIT 20", (r["id"],))]
        return rows

    def group(self, gid: int, *, start: float, end: float, step: float, bucket: float) -> dict[str, Any] | None:
        with self._conn() as conn:
            row = conn.execute("SELECT * FROM app_exc_groups WHERE id = ?", (gid,)).fetchone()
            if row is None:
                return None
            g = dict(row)
            g["sample_frames"] = orjson.loads(g["sample_frames"] or "[]")
            g["hosts"] = [dict(h) for h in conn.execute(
                "SELECT host, count, first_seen, last_seen FROM app_exc_hosts WHERE group_id = ? ORDER BY count DESC LIMIT 100", (gid,))]
            step = max(step, bucket)
            hist: dict[int, int] = {}
            for b, n in conn.execute(
                "SELECT bucket, SUM(count) FROM app_exc_counts WHERE group_id = ? AND bucket >= ? AND bucket < ? GROUP BY bucket",
                (gid, int(start // bucket * bucket), end),
            ):
                k = int(b // step * step)
                hist[k] = hist.get(k, 0) + n
            g["histogram"] = {"step": step, "points": [[k, hist[k]] for k in sorted(hist)]}
            g["window_count"] = sum(hist.values())
            g["occurrences"] = [dict(o) for o in conn.execute(
                "SELECT ts, host, service, endpoint, count, message FROM app_exc_occurrences WHERE group_id = ? ORDER BY ts DESC LIMIT 50",
                (gid,))]
        return g

    def perf(self, kind: str, *, start: float, end: float, module: str | None, service: str | None, db: str | None,
             sort: str, limit: int, bucket: float) -> list[dict[str, Any]]:
        where = ["kind = ?", "bucket >= ?", "bucket < ?"]
        args: list[Any] = [kind, int(start // bucket * bucket), end]
        for col, v in (("module", module), ("service", service), ("db", db)):
            if v:
                where.append(f"{col} = ?")
                args.append(v)
        merged: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        with self._conn() as conn:
            for r in conn.execute(
                f"SELECT service, module, db, name, count, errors, sum, min, max, sketch, slowest, statement FROM app_perf WHERE {' AND '.join(where)}",
                args,
            ):
                key = (r["service"], r["module"], r["db"], r["name"])
                sk = Sketch.from_json(orjson.loads(r["sketch"]))
                m = merged.get(key)
                if m is None:
                    merged[key] = {"sketch": sk, "count": r["count"], "errors": r["errors"], "sum": r["sum"], "min": r["min"],
                                   "max": r["max"], "slowest": orjson.loads(r["slowest"]), "statement": r["statement"]}
                    continue
                m["sketch"].merge(sk)
                m["count"] += r["count"]
                m["errors"] += r["errors"]
                m["sum"] += r["sum"]
                m["min"] = min(m["min"], r["min"])
                m["max"] = max(m["max"], r["max"])
                m["slowest"] = sorted(m["slowest"] + orjson.loads(r["slowest"]), key=lambda s: -s["duration"])[:5]
        out = []
        for (service, module, db, name), m in merged.items():
            q = _quantiles(m["sketch"])
            item: dict[str, Any] = {
                "service": service, "module": module, "count": m["count"], "errors": m["errors"],
                "error_rate": m["errors"] / m["count"] if m["count"] else 0.0, "total_seconds": m["sum"],
                "avg_seconds": m["sum"] / m["count"] if m["count"] else None, "min_seconds": m["min"], "max_seconds": m["max"],
                "p50_seconds": q["p50"], "p95_seconds": q["p95"], "p99_seconds": q["p99"], "slowest": m["slowest"][:5],
            }
            if kind == "sql":
                item.update(db=db, fingerprint=name, statement=m["statement"])
            else:
                item["endpoint"] = name
            out.append(item)
        keyf = {"p95": lambda x: x["p95_seconds"] or 0, "p99": lambda x: x["p99_seconds"] or 0, "p50": lambda x: x["p50_seconds"] or 0,
                "total": lambda x: x["total_seconds"], "count": lambda x: x["count"], "error_rate": lambda x: (x["error_rate"], x["errors"]),
                "max": lambda x: x["max_seconds"]}[sort]
        out.sort(key=keyf, reverse=True)
        return out[:limit]
