"""Store maintenance run on the writer thread: 1m/1h rollups of dirty ranges, retention, the disk bound."""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass, field

from collector import schema
from collector.config import StoreConfig

log = logging.getLogger("collector.store")


@dataclass
class MaintenanceReport:
    rolled_series: int = 0
    deleted: dict[str, int] = field(default_factory=dict)
    used_bytes: int = 0
    disk_bound_hit: bool = False


def rollup_dirty(conn: sqlite3.Connection, limit: int = 5000) -> int:
    """Recompute 1m and 1h rollups over the dirty raw ranges of up to `limit` series; returns series done."""
    dirty = conn.execute("SELECT series_id, lo, hi FROM dirty LIMIT ?", (limit,)).fetchall()
    floor = raw_floor(conn)
    for sid, lo, hi in dirty:
        m_lo = lo // 60000 * 60
        if m_lo * 1000 < floor:
            # raw data before `floor` was deleted (retention, disk bound): a minute there can no longer be
            # recomputed completely, so its rollup is left as it was (late samples there stay raw-only)
            m_lo = -(-floor // 60000) * 60
            if m_lo * 1000 > hi:
                conn.execute("DELETE FROM dirty WHERE series_id = ? AND lo >= ? AND hi <= ?", (sid, lo, hi))
                continue
        m_hi = hi // 60000 * 60  # last minute bucket (seconds)
        buckets: dict[int, list[float]] = {}
        for ts, v in conn.execute(
            "SELECT ts, value FROM points WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts", (sid, m_lo * 1000, (m_hi + 60) * 1000)
        ):
            b = ts // 60000 * 60
            a = buckets.get(b)
            if a is None:
                buckets[b] = [1, v, v, v, v, ts]
            else:
                a[0] += 1
                a[1] += v
                if v < a[2]:
                    a[2] = v
                if v > a[3]:
                    a[3] = v
                a[4] = v
                a[5] = ts
        if buckets:
            conn.executemany(
                "INSERT OR REPLACE INTO rollup_1m(series_id, ts, cnt, sum, min, max, last, last_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(sid, b, int(a[0]), a[1], a[2], a[3], a[4], int(a[5])) for b, a in buckets.items()],
            )
        h_lo = m_lo // 3600 * 3600
        h_hi = m_hi // 3600 * 3600
        hours: dict[int, list[float]] = {}
        for ts, cnt, sm, mn, mx, last, last_ts in conn.execute(
            "SELECT ts, cnt, sum, min, max, last, last_ts FROM rollup_1m WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts",
            (sid, h_lo, h_hi + 3600),
        ):
            b = ts // 3600 * 3600
            a = hours.get(b)
            if a is None:
                hours[b] = [cnt, sm, mn, mx, last, last_ts]
            else:
                a[0] += cnt
                a[1] += sm
                if mn < a[2]:
                    a[2] = mn
                if mx > a[3]:
                    a[3] = mx
                if last_ts >= a[5]:
                    a[4] = last
                    a[5] = last_ts
        if hours:
            conn.executemany(
                "INSERT OR REPLACE INTO rollup_1h(series_id, ts, cnt, sum, min, max, last, last_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(sid, b, int(a[0]), a[1], a[2], a[3], a[4], int(a[5])) for b, a in hours.items()],
            )
        # only clear the range we covered; ingest may have widened it meanwhile (same thread, so it cannot)
        conn.execute("DELETE FROM dirty WHERE series_id = ? AND lo >= ? AND hi <= ?", (sid, lo, hi))
    return len(dirty)


def raw_floor(conn: sqlite3.Connection) -> int:
    """Milliseconds before which raw samples may have been deleted."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'raw_floor_ms'").fetchone()
    return int(row[0]) if row else 0


def _raise_floor(conn: sqlite3.Connection, cutoff_s: float) -> None:
    ms = int(min(cutoff_s, time.time()) * 1000)  # never in the future (a test's or a wrong clock's `now`)
    if ms > raw_floor(conn):
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('raw_floor_ms', ?)", (str(ms),))


def _series_ids(conn: sqlite3.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM series")]


def delete_before(conn: sqlite3.Connection, table: str, cutoff: float, sids: list[int] | None = None) -> int:
    """Delete rows older than cutoff (unix s) of a points/rollup table, per series (primary key ranges)."""
    key = int(cutoff * 1000) if table == "points" else int(cutoff)
    if table == "points":
        _raise_floor(conn, cutoff)
    n = 0
    for sid in sids if sids is not None else _series_ids(conn):
        n += conn.execute(f"DELETE FROM {table} WHERE series_id = ? AND ts < ?", (sid, key)).rowcount
    return n


def apply_retention(conn: sqlite3.Connection, cfg: StoreConfig, now: float | None = None) -> dict[str, int]:
    now = time.time() if now is None else now
    r = cfg.retention
    sids = _series_ids(conn)
    out = {
        "raw": delete_before(conn, "points", now - r.raw, sids),
        "1m": delete_before(conn, "rollup_1m", now - r.m1, sids),
        "1h": delete_before(conn, "rollup_1h", now - r.h1, sids),
        "events": conn.execute("DELETE FROM events WHERE ts < ?", (now - r.events,)).rowcount,
        "batch_ids": conn.execute("DELETE FROM batches WHERE received_at < ?", (now - r.batch_ids,)).rowcount,
    }
    return out


def _oldest(conn: sqlite3.Connection, table: str, sids: list[int]) -> float | None:
    best: int | None = None
    for sid in sids:
        row = conn.execute(f"SELECT min(ts) FROM {table} WHERE series_id = ?", (sid,)).fetchone()
        if row[0] is not None and (best is None or row[0] < best):
            best = row[0]
    if best is None:
        return None
    return best / 1000 if table == "points" else float(best)


def enforce_disk_bound(conn: sqlite3.Connection, max_bytes: int, now: float | None = None, commit: bool = True) -> dict[str, int]:
    """Delete oldest data (raw first, then events, 1m, 1h) until the used size is under max_bytes."""
    if max_bytes <= 0:
        return {}
    used = schema.used_bytes(conn)
    if used <= max_bytes:
        return {}
    now = time.time() if now is None else now
    start_used = used
    deleted: dict[str, int] = {}
    sids = _series_ids(conn)
    for table, name in (("points", "raw"), ("events", "events"), ("rollup_1m", "1m"), ("rollup_1h", "1h")):
        for _ in range(50):
            if used <= max_bytes:
                break
            if table == "events":
                row = conn.execute("SELECT min(ts), max(ts) FROM events").fetchone()
                if row[0] is None:
                    break
                cutoff = row[0] + max(60.0, (row[1] - row[0]) * 0.1)
                n = conn.execute("DELETE FROM events WHERE ts < ?", (cutoff,)).rowcount
            else:
                oldest = _oldest(conn, table, sids)
                if oldest is None:
                    break
                cutoff = oldest + max(60.0, (now - oldest) * 0.1)
                n = delete_before(conn, table, cutoff, sids)
            deleted[name] = deleted.get(name, 0) + n
            if commit and conn.in_transaction:
                conn.execute("COMMIT")
                conn.execute("BEGIN IMMEDIATE")
            used = schema.used_bytes(conn)
        if used <= max_bytes:
            break
    log.warning(
        "store over max_disk_bytes: deleted oldest data",
        extra={"used_bytes_before": start_used, "used_bytes_after": used, "max_disk_bytes": max_bytes,
               **{f"deleted_{k}": v for k, v in deleted.items()}},
    )
    return deleted
