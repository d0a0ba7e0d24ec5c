"""The store's single writer thread: group commit of batches (dedupe, samples, events, hosts, extensions) and jobs."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import operator
import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from checks.model import Batch

from collector import schema

log = logging.getLogger("collector.store")

STORED = "stored"
DUPLICATE = "duplicate"

_SORT = orjson.OPT_SORT_KEYS
_BY_SERIES_TS = operator.itemgetter(0, 1)
_INSERT_POINTS = (
    "INSERT OR REPLACE INTO points(series_id, ts, value) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(?)"
)


class Overloaded(Exception):
    """Too many samples wait for the writer; the client should retry later."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"store writer overloaded, retry in {retry_after:.0f}s")
        self.retry_after = retry_after


@dataclass(slots=True)
class IngestItem:
    batch: Batch | None  # None until the writer decoded `raw` (submit_raw)
    raw: bytes | None  # the batch as checks.model JSON, for sink outboxes
    future: cf.Future[str]
    nsamples: int
    version: str | None = None
    decode: Callable[[bytes], Batch] | None = None
    check: Callable[[Batch], None] | None = None


@dataclass(slots=True)
class Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: cf.Future[Any]


@dataclass
class WriterStats:
    batches: int = 0
    duplicates: int = 0
    samples: int = 0
    events: int = 0
    commits: int = 0
    failed_batches: int = 0
    extension_errors: int = 0
    commit_seconds: float = 0.0


_STOP = object()


class Writer:
    """Owns the write connection. Everything that writes goes through `submit` or `call`."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "full",
        group_commit_samples: int = 50_000,
        max_pending_samples: int = 1_000_000,
        extensions: list[Any] | None = None,
        on_committed: Callable[[list[IngestItem]], None] | None = None,
    ) -> None:
        self.path = path
        self.group_commit_samples = group_commit_samples
        self.max_pending_samples = max_pending_samples
        self.extensions = extensions or []
        self.on_committed = on_committed
        self.stats = WriterStats()
        self.conn = schema.connect(path, synchronous=synchronous)
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._sids: dict[tuple[str, bytes], int] = {}
        self._thread: threading.Thread | None = None
        self._ckpt_thread: threading.Thread | None = None
        self._ckpt_stop = threading.Event()

    # ------------------------------------------------------------ lifecycle

    def migrate(self) -> None:
        schema.migrate(self.conn)
        for ext in self.extensions:
            self.conn.execute("BEGIN")
            try:
                ext.migrate(self.conn)
                if self.conn.in_transaction:
                    self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        for sid, metric, tj in self.conn.execute("SELECT id, metric, tags_json FROM series"):
            self._sids[(metric, tj.encode())] = sid

    def start(self) -> None:
        # checkpoints (copying the WAL into the database, with their fsyncs) run on their own thread and
        # connection, so the writer never stalls behind one
        self.conn.execute("PRAGMA wal_autocheckpoint=0")
        self._ckpt_stop.clear()
        self._ckpt_thread = threading.Thread(target=self._checkpointer, name="infrawatch-store-checkpoint", daemon=True)
        self._ckpt_thread.start()
        self._thread = threading.Thread(target=self._run, name="infrawatch-store-writer", daemon=True)
        self._thread.start()

    def _checkpointer(self, every: float = 1.0, wal_bytes: int = 32 * 1024 * 1024) -> None:
        conn = schema.connect(self.path, synchronous="normal")
        last = time.monotonic()
        try:
            while not self._ckpt_stop.wait(0.2):
                try:
                    size = os.path.getsize(self.path + "-wal")
                except OSError:
                    size = 0
                if size == 0 or (size < wal_bytes and time.monotonic() - last < every):
                    continue
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as e:
                    log.warning("store checkpoint failed", extra={"error": str(e)})
                last = time.monotonic()
        finally:
            conn.close()

    def close(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self._q.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        if self._ckpt_thread is not None:
            self._ckpt_stop.set()
            self._ckpt_thread.join(timeout)
            self._ckpt_thread = None
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass
        self.conn.close()

    @property
    def pending_samples(self) -> int:
        return self._pending

    # ------------------------------------------------------------ submitting

    def submit(self, batch: Batch, raw: bytes | None = None, *, version: str | None = None, force: bool = False) -> cf.Future[str]:
        """Queue a batch; the future resolves to STORED or DUPLICATE after the commit."""
        n = len(batch.samples) + len(batch.events)
        with self._lock:
            if not force and self._pending + n > self.max_pending_samples and self._pending > 0:
                raise Overloaded(1.0 + self._pending / 200_000)
            self._pending += n
        fut: cf.Future[str] = cf.Future()
        self._q.put(IngestItem(batch, raw, fut, n, version))
        return fut

    def submit_raw(
        self, raw: bytes, decode: Callable[[bytes], Batch], check: Callable[[Batch], None] | None = None, *, version: str | None = None
    ) -> IngestItem:
        """Queue an undecoded batch: the writer thread decodes it (no GIL ping-pong with the event loop).

        The item's future raises what `decode`/`check` raised, or resolves like `submit`'s; `item.batch`
        is set once decoded.
        """
        n = max(1, len(raw) // 90)  # estimate (~90 bytes of JSON per sample) for the pending bound
        with self._lock:
            if self._pending + n > self.max_pending_samples and self._pending > 0:
                raise Overloaded(1.0 + self._pending / 200_000)
            self._pending += n
        item = IngestItem(None, raw, cf.Future(), n, version, decode, check)
        self._q.put(item)
        return item

    def call(self, fn: Callable[[sqlite3.Connection], Any]) -> cf.Future[Any]:
        """Run fn(conn) on the writer thread inside its own transaction (committed if fn returns)."""
        fut: cf.Future[Any] = cf.Future()
        self._q.put(Job(fn, fut))
        return fut

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            group: list[IngestItem] = []
            jobs: list[Job] = []
            stop = False
            n = 0
            while True:
                if isinstance(item, IngestItem):
                    group.append(item)
                    n += item.nsamples
                elif isinstance(item, Job):
                    jobs.append(item)
                elif item is _STOP:
                    stop = True
                    break
                if n >= self.group_commit_samples or jobs:
                    break
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
            if group:
                group = self._decode(group)
            if group:
                self._ingest(group)
            for j in jobs:
                self._job(j)
            if stop:
                return

    def _decode(self, group: list[IngestItem]) -> list[IngestItem]:
        ok: list[IngestItem] = []
        for it in group:
            if it.batch is None:
                try:
                    assert it.decode is not None and it.raw is not None
                    it.batch = it.decode(it.raw)
                    if it.check is not None:
                        it.check(it.batch)
                except Exception as e:  # noqa: BLE001 — reported to the waiting request
                    self._done([it], [e])
                    continue
            ok.append(it)
        return ok

    def _job(self, j: Job) -> None:
        if not j.future.set_running_or_notify_cancel():
            return
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            res = j.fn(conn)
            if conn.in_transaction:
                conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._reload_sids()
            j.future.set_exception(e)
            return
        j.future.set_result(res)

    def _reload_sids(self) -> None:
        self._sids = {(m, tj.encode()): sid for sid, m, tj in self.conn.execute("SELECT id, metric, tags_json FROM series")}

    def _sid(self, metric: str, key: bytes, host: str, new: list[tuple[str, bytes]]) -> int:
        cur = self.conn.execute(
            "INSERT INTO series(metric, host, tags_json) VALUES (?, ?, ?) ON CONFLICT(metric, tags_json) DO NOTHING",
            (metric, host, key.decode()),
        )
        if cur.rowcount == 1:
            sid = int(cur.lastrowid)  # type: ignore[arg-type]
        else:
            sid = self.conn.execute("SELECT id FROM series WHERE metric = ? AND tags_json = ?", (metric, key.decode())).fetchone()[0]
        self._sids[(metric, key)] = sid
        new.append((metric, key))
        return sid

    def _ingest(self, group: list[IngestItem]) -> None:
        conn = self.conn
        t0 = time.perf_counter()
        results: list[Any] = []
        new_keys: list[tuple[str, bytes]] = []
        dirty: dict[int, list[int]] = {}
        now = time.time()
        sids = self._sids
        dumps = orjson.dumps
        try:
            conn.execute("BEGIN IMMEDIATE")
            for it in group:
                b = it.batch
                assert b is not None
                conn.execute("SAVEPOINT b")
                batch_new: list[tuple[str, bytes]] = []
                try:
                    cur = conn.execute("INSERT OR IGNORE INTO batches(batch_id, agent, received_at) VALUES (?, ?, ?)", (b.batch_id, b.agent, now))
                    if cur.rowcount == 0:
                        conn.execute("RELEASE b")
                        results.append(DUPLICATE)
                        continue
                    agent = b.agent
                    rows = []
                    append = rows.append
                    for s in b.samples:
                        tags = s.tags
                        if "host" not in tags:
                            tags = {**tags, "host": agent}
                        key = dumps(tags, option=_SORT)
                        sid = sids.get((s.name, key))
                        if sid is None:
                            sid = self._sid(s.name, key, tags["host"], batch_new)
                        append((sid, round(s.ts * 1000), s.value))
                    batch_dirty: dict[int, list[int]] = {}
                    if rows:
                        rows.sort(key=_BY_SERIES_TS)  # stable: of two samples at the same ms, the later wins
                        # one statement for the whole batch: SQLite walks the JSON array in C without taking
                        # the GIL back per row (executemany would hand it over ~once per row)
                        conn.execute(_INSERT_POINTS, (dumps(rows),))
                        # dirty range per series: rows are sorted by (series, ts)
                        prev = None
                        for r in rows:
                            if r[0] != prev:
                                prev = r[0]
                                batch_dirty[prev] = [r[1], r[1]]
                            else:
                                batch_dirty[prev][1] = r[1]
                    if b.events:
                        conn.executemany(
                            "INSERT INTO events(ts, kind, host, message, tags_json, data_json) VALUES (?, ?, ?, ?, ?, ?)",
                            [
                                (e.ts, e.kind, e.tags.get("host", agent), e.message, dumps(e.tags).decode(), dumps(e.data, default=str).decode())
                                for e in b.events
                            ],
                        )
                    conn.execute(
                        "INSERT INTO hosts(host, first_seen, last_seen, version, batches) VALUES (?, ?, ?, ?, 1) "
                        "ON CONFLICT(host) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen), "
                        "version = coalesce(excluded.version, version), batches = batches + 1",
                        (agent, now, now, it.version),
                    )
                    for ext in self.extensions:
                        # an extension failing on one batch loses only its own rows for that batch: the samples are
                        # stored and acknowledged (a 5xx would make the agent re-send a poison batch forever)
                        conn.execute("SAVEPOINT ext")
                        try:
                            ext.in_transaction(conn, b)
                            conn.execute("RELEASE ext")
                        except Exception:  # noqa: BLE001
                            conn.execute("ROLLBACK TO ext")
                            conn.execute("RELEASE ext")
                            self.stats.extension_errors += 1
                            log.exception("extension failed on a batch; stored the batch without that extension's data",
                                          extra={"extension": getattr(ext, "name", type(ext).__name__), "batch_id": b.batch_id, "agent": agent})
                    conn.execute("RELEASE b")
                except Exception as e:  # noqa: BLE001 — one bad batch must not sink the group
                    conn.execute("ROLLBACK TO b")
                    conn.execute("RELEASE b")
                    for k in batch_new:
                        sids.pop(k, None)
                    log.exception("batch failed to store, rolled back", extra={"batch_id": b.batch_id, "agent": b.agent})
                    results.append(e)
                    continue
                new_keys.extend(batch_new)
                for sid, (lo, hi) in batch_dirty.items():
                    d = dirty.get(sid)
                    if d is None:
                        dirty[sid] = [lo, hi]
                    else:
                        if lo < d[0]:
                            d[0] = lo
                        if hi > d[1]:
                            d[1] = hi
                results.append(STORED)
            if dirty:
                conn.executemany(
                    "INSERT INTO dirty(series_id, lo, hi) VALUES (?, ?, ?) "
                    "ON CONFLICT(series_id) DO UPDATE SET lo = min(lo, excluded.lo), hi = max(hi, excluded.hi)",
                    [(sid, d[0], d[1]) for sid, d in dirty.items()],
                )
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            for k in new_keys:
                sids.pop(k, None)
            log.error("group commit failed", extra={"batches": len(group), "error": f"{type(e).__name__}: {e}"})
            self._done(group, [e] * len(group))
            if not isinstance(e, Exception):
                raise
            return
        st = self.stats
        st.commits += 1
        st.commit_seconds += time.perf_counter() - t0
        stored = [it for it, r in zip(group, results) if r is STORED]
        for it in stored:
            st.batches += 1
            st.samples += len(it.batch.samples)
            st.events += len(it.batch.events)
        st.duplicates += sum(1 for r in results if r is DUPLICATE)
        st.failed_batches += sum(1 for r in results if isinstance(r, BaseException))
        if stored and self.on_committed is not None:
            try:
                self.on_committed(stored)
            except Exception:  # noqa: BLE001
                log.exception("post-commit hook failed")
        self._done(group, results)

    def _done(self, group: list[IngestItem], results: list[Any]) -> None:
        with self._lock:
            self._pending -= sum(it.nsamples for it in group)
        for it, r in zip(group, results):
            try:
                if isinstance(r, BaseException):
                    it.future.set_exception(r)
                else:
                    it.future.set_result(r)
            except cf.InvalidStateError:  # the waiter gave up (client went away)
                pass


__all__ = ["Writer", "Overloaded", "STORED", "DUPLICATE", "IngestItem"]
