"""The embedded store's SQLite schema and connection settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series(
    id INTEGER PRIMARY KEY,
    metric TEXT NOT NULL,
    host TEXT NOT NULL,
    tags_json TEXT NOT NULL,
    UNIQUE(metric, tags_json)
);
CREATE INDEX IF NOT EXISTS series_host ON series(host, metric);
-- raw samples; ts in integer milliseconds
CREATE TABLE IF NOT EXISTS points(
    series_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY(series_id, ts)
) WITHOUT ROWID;
-- write buffer under load: batches append here (a few pages per batch instead of one leaf per series),
-- the writer moves the rows into points in large sorted chunks (collector/writer.py, docs/store.md)
CREATE TABLE IF NOT EXISTS points_inbox(series_id INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL);
-- rollups; ts = bucket start in integer seconds; last_ts in milliseconds
CREATE TABLE IF NOT EXISTS rollup_1m(
    series_id INTEGER NOT NULL, ts INTEGER NOT NULL,
    cnt INTEGER NOT NULL, sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, last REAL NOT NULL, last_ts INTEGER NOT NULL,
    PRIMARY KEY(series_id, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_1h(
    series_id INTEGER NOT NULL, ts INTEGER NOT NULL,
    cnt INTEGER NOT NULL, sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, last REAL NOT NULL, last_ts INTEGER NOT NULL,
    PRIMARY KEY(series_id, ts)
) WITHOUT ROWID;
-- raw ranges (ms) not yet rolled up, per series
CREATE TABLE IF NOT EXISTS dirty(series_id INTEGER PRIMARY KEY, lo INTEGER NOT NULL, hi INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batches(batch_id TEXT PRIMARY KEY, agent TEXT NOT NULL, received_at REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batches_received ON batches(received_at);
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    host TEXT NOT NULL,
    message TEXT NOT NULL,
    tags_json TEXT NOT NULL,
    data_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind_ts ON events(kind, ts);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE TABLE IF NOT EXISTS hosts(
    host TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    version TEXT,
    batches INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""

ROLLUPS = {"1m": ("rollup_1m", 60), "1h": ("rollup_1h", 3600)}


def connect(path: str | Path, *, synchronous: str = "full", readonly: bool = False) -> sqlite3.Connection:
    """A connection with the store's settings (WAL, busy timeout). Readers are read-only."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None, timeout=30)
    else:
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        conn.execute("PRAGMA journal_size_limit=67108864")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


MERGE_INBOX = (
    "INSERT OR REPLACE INTO points(series_id, ts, value) "
    "SELECT series_id, ts, value FROM points_inbox ORDER BY series_id, ts, rowid"  # arrival order: the later wins
)


MARK_INBOX_DIRTY = (
    "INSERT INTO dirty(series_id, lo, hi) SELECT series_id, min(ts), max(ts) FROM points_inbox WHERE true GROUP BY series_id "
    "ON CONFLICT(series_id) DO UPDATE SET lo = min(lo, excluded.lo), hi = max(hi, excluded.hi)"
)


def merge_inbox(conn: sqlite3.Connection) -> int:
    """Move buffered rows into points (and mark their ranges dirty) inside the caller's transaction."""
    conn.execute(MARK_INBOX_DIRTY)
    n = conn.execute(MERGE_INBOX).rowcount
    conn.execute("DELETE FROM points_inbox")
    return int(n)


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes the database really uses (pages minus the free list)."""
    pc = conn.execute("PRAGMA page_count").fetchone()[0]
    fl = conn.execute("PRAGMA freelist_count").fetchone()[0]
    ps = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pc - fl) * ps)
