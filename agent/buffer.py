"""The agent's disk buffer: readings in SQLite (WAL) under state_dir, bounded, shipped through persisted transactions.

Layout (one file, `buffer.db`):
- `rows`: one row per check run (or submit call): compact JSON of its readings, with its reading count
  and byte size. AUTOINCREMENT ids, so ids are never reused and a row range names rows unambiguously.
- `inflight`: at most one record (batch_id, first_id, last_id). `begin()` writes it *before* the batch
  leaves, so after a crash the same rows are offered again under the same batch id; the collector
  deduplicates by batch id, so nothing is lost and nothing is stored twice.
- `counters`: persisted totals (readings dropped because the buffer was full, readings the collector
  refused permanently).

Every method runs on the caller's thread (the agent's event loop); each call is one short transaction.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson

from checks.model import Event, Reading, Sample, encode_readings, new_batch_id

log = logging.getLogger("infrawatch.agent.buffer")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    readings INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS inflight (
    batch_id TEXT PRIMARY KEY,
    first_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(slots=True)
class Pending:
    """A batch taken from the buffer and not yet acknowledged."""

    batch_id: str
    first_id: int
    last_id: int
    samples: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    nbytes: int = 0
    rows: int = 0
    #: True when this batch id was handed out before (a retry or a resend after restart)
    resent: bool = False

    @property
    def readings(self) -> int:
        return len(self.samples) + len(self.events)

    def to_readings(self) -> list[Reading]:
        out: list[Reading] = [Sample(s["name"], s["value"], s["ts"], s.get("tags") or {}) for s in self.samples]
        out.extend(Event(e["kind"], e["ts"], e.get("message", ""), e.get("tags") or {}, e.get("data") or {}) for e in self.events)
        return out


@dataclass(slots=True)
class BufferStats:
    depth: int = 0  # readings waiting (including an in-flight batch)
    bytes: int = 0  # payload bytes waiting
    rows: int = 0
    dropped: int = 0  # readings dropped because the buffer was full (persisted)
    rejected: int = 0  # readings the collector refused permanently (persisted)


class Buffer:
    """Bounded, crash-safe queue of readings with begin/commit/release transactions."""

    def __init__(self, state_dir: str | os.PathLike[str], max_bytes: int, *, filename: str = "buffer.db") -> None:
        self.path = Path(state_dir) / filename
        self.max_bytes = max_bytes
        self.stats = BufferStats()
        #: called after each append (the shipper uses it to ship early when a batch is full)
        self.on_append: Callable[[], None] | None = None
        self._db = self._open()
        self._load_stats()

    # ------------------------------------------------------------ setup

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a commit survives a process crash (SIGKILL); an OS crash may lose the last commits.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA cache_size=-1024")  # 1 MiB page cache: RSS matters more than speed here
            db.execute("PRAGMA journal_size_limit=4194304")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            ok = db.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {ok}")
        except sqlite3.DatabaseError as e:
            db.close()
            # A corrupt buffer must not keep the agent down: keep it aside for inspection, start afresh.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error("buffer database unusable, starting a new one", extra={"path": str(self.path), "error": str(e), "moved_to": str(aside)})
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(self.path) + suffix)
                if p.exists():
                    p.rename(str(aside) + suffix)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        return db

    def _load_stats(self) -> None:
        depth, nbytes, rows = self._db.execute("SELECT COALESCE(SUM(readings),0), COALESCE(SUM(nbytes),0), COUNT(*) FROM rows").fetchone()
        self.stats.depth, self.stats.bytes, self.stats.rows = int(depth), int(nbytes), int(rows)
        self.stats.dropped = self._counter("dropped")
        self.stats.rejected = self._counter("rejected")

    def _counter(self, name: str) -> int:
        r = self._db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
        return int(r[0]) if r else 0

    def _add_counter(self, name: str, n: int) -> None:
        self._db.execute(
            "INSERT INTO counters(name, value) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, n)
        )

    def close(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self._db.close()

    # ------------------------------------------------------------ producing

    def append(self, readings: list[Reading], *, max_row_readings: int = 5000) -> None:
        """Store readings (one row per `max_row_readings`), then drop the oldest rows beyond max_bytes."""
        if not readings:
            return
        now = time.time()
        rows = []
        for i in range(0, len(readings), max_row_readings):
            chunk = readings[i : i + max_row_readings]
            payload = encode_readings(chunk)
            rows.append((now, len(chunk), len(payload), payload))
        try:
            with self._tx():
                self._db.executemany("INSERT INTO rows(created, readings, nbytes, payload) VALUES (?,?,?,?)", rows)
                for _, n, b, _ in rows:
                    self.stats.depth += n
                    self.stats.bytes += b
                    self.stats.rows += 1
                if self.stats.bytes > self.max_bytes:
                    self._enforce_bound()
        except sqlite3.Error:
            self._load_stats()  # the transaction was rolled back: recount
            raise
        if self.on_append is not None:
            self.on_append()

    def _enforce_bound(self) -> None:
        """Drop the oldest rows until the payload fits in max_bytes (inside the caller's transaction)."""
        excess = self.stats.bytes - self.max_bytes
        cut = None
        freed = dropped = nrows = 0
        for rid, n, b in self._db.execute("SELECT id, readings, nbytes FROM rows ORDER BY id"):
            cut = rid
            freed += b
            dropped += n
            nrows += 1
            if freed >= excess:
                break
        if cut is None:
            return
        self._db.execute("DELETE FROM rows WHERE id <= ?", (cut,))
        self._add_counter("dropped", dropped)
        self.stats.depth -= dropped
        self.stats.bytes -= freed
        self.stats.rows -= nrows
        self.stats.dropped += dropped
        log.warning(
            "buffer full, dropped oldest readings",
            extra={"dropped": dropped, "dropped_total": self.stats.dropped, "max_bytes": self.max_bytes},
        )

    # ------------------------------------------------------------ shipping transactions

    def begin(self, max_readings: int, max_bytes: int) -> Pending | None:
        """The next batch to ship, or None when empty.

        An unacknowledged batch (released, or left by a crash) comes back first, with its batch id.
        Otherwise the oldest rows are merged up to the limits (at least one row) under a new batch id,
        and that in-flight record is committed to disk before this returns.
        """
        rec = self._db.execute("SELECT batch_id, first_id, last_id FROM inflight ORDER BY created LIMIT 1").fetchone()
        if rec is not None:
            bid, first, last = rec
            p = Pending(bid, first, last, resent=True)
            for (payload,) in self._db.execute("SELECT payload FROM rows WHERE id BETWEEN ? AND ? ORDER BY id", (first, last)):
                self._add_payload(p, payload)
            if p.rows:
                return p
            with self._tx():  # its rows were all dropped (buffer full): forget it
                self._db.execute("DELETE FROM inflight WHERE batch_id=?", (bid,))
        p = Pending("", 0, 0)
        for rid, n, b, payload in self._db.execute("SELECT id, readings, nbytes, payload FROM rows ORDER BY id"):
            if p.rows and (p.readings + n > max_readings or p.nbytes + b > max_bytes):
                break
            if not p.rows:
                p.first_id = rid
            p.last_id = rid
            self._add_payload(p, payload)
        if not p.rows:
            return None
        p.batch_id = new_batch_id()
        with self._tx():
            self._db.execute(
                "INSERT INTO inflight(batch_id, first_id, last_id, created) VALUES (?,?,?,?)", (p.batch_id, p.first_id, p.last_id, time.time())
            )
        return p

    @staticmethod
    def _add_payload(p: Pending, payload: bytes) -> None:
        d = orjson.loads(payload)
        p.samples.extend(d.get("samples", ()))
        p.events.extend(d.get("events", ()))
        p.nbytes += len(payload)
        p.rows += 1

    def _range_of(self, batch_id: str) -> tuple[int, int] | None:
        r = self._db.execute("SELECT first_id, last_id FROM inflight WHERE batch_id=?", (batch_id,)).fetchone()
        return (int(r[0]), int(r[1])) if r else None

    def _delete_range(self, first: int, last: int) -> int:
        n, b, rows = self._db.execute(
            "SELECT COALESCE(SUM(readings),0), COALESCE(SUM(nbytes),0), COUNT(*) FROM rows WHERE id BETWEEN ? AND ?", (first, last)
        ).fetchone()
        self._db.execute("DELETE FROM rows WHERE id BETWEEN ? AND ?", (first, last))
        self.stats.depth -= int(n)
        self.stats.bytes -= int(b)
        self.stats.rows -= int(rows)
        return int(n)

    def commit(self, batch_id: str, delivered: int | None = None) -> int:
        """The collector acknowledged the batch: delete its rows. Returns the readings removed.

        `delivered` is the number of readings the acknowledged request carried. When the bound dropped
        some of its rows while the request was in flight, those readings were counted as dropped yet
        arrived: they are taken off the dropped count, which stays exact.
        """
        rng = self._range_of(batch_id)
        if rng is None:
            return 0
        with self._tx():
            n = self._delete_range(*rng)
            self._db.execute("DELETE FROM inflight WHERE batch_id=?", (batch_id,))
            undrop = min(delivered - n, self.stats.dropped) if delivered is not None and delivered > n else 0
            if undrop:
                self._add_counter("dropped", -undrop)
        self.stats.dropped -= undrop
        return n

    def release(self, batch_id: str) -> None:
        """Sending failed and will be retried: the rows stay, and so does the batch id (for dedup)."""

    rollback = release

    def reject(self, batch_id: str) -> int:
        """The collector refused the batch for good (e.g. 400): delete it and count it. Returns readings."""
        rng = self._range_of(batch_id)
        if rng is None:
            return 0
        with self._tx():
            n = self._delete_range(*rng)
            self._db.execute("DELETE FROM inflight WHERE batch_id=?", (batch_id,))
            self._add_counter("rejected", n)
        self.stats.rejected += n
        return n

    def split(self, batch_id: str) -> bool:
        """The batch was refused as too large (413) and was not stored: forget its id so the next
        `begin` takes fewer rows (half). Returns False when it is a single row (cannot be split)."""
        rng = self._range_of(batch_id)
        if rng is None:
            return False
        ids = [r[0] for r in self._db.execute("SELECT id FROM rows WHERE id BETWEEN ? AND ? ORDER BY id", rng)]
        if len(ids) < 2:
            return False
        half = ids[len(ids) // 2 - 1]
        with self._tx():
            self._db.execute("DELETE FROM inflight WHERE batch_id=?", (batch_id,))
            self._db.execute(
                "INSERT INTO inflight(batch_id, first_id, last_id, created) VALUES (?,?,?,?)", (new_batch_id(), ids[0], half, time.time())
            )
        return True

    # ------------------------------------------------------------ helpers

    def _tx(self) -> "_Tx":
        return _Tx(self._db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if et is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
