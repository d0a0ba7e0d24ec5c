"""The store's single writer thread: group commit of batches (dedupe, samples, events, hosts, extensions) and jobs."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from checks import model
from checks.model import Batch, Sample, WireError, decode_batch_obj, decode_event

from collector import schema

log = logging.getLogger("collector.store")

STORED = "stored"
DUPLICATE = "duplicate"

_SORT = orjson.OPT_SORT_KEYS
_BATCH_KEYS = frozenset(("version", "batch_id", "agent", "sent_at", "samples", "events"))
_MIN_TS, _MAX_TS = model.MIN_TS, model.MAX_TS
#: bound on the fast series cache ((metric, tags as sent) per agent -> series id); cleared when exceeded
FAST_CACHE_MAX = 2_000_000
_INSERT_POINTS = "INSERT OR REPLACE INTO points(series_id, ts, value) VALUES (?, ?, ?)"
_INSERT_INBOX = "INSERT INTO points_inbox(series_id, ts, value) VALUES (?, ?, ?)"
# one statement per batch: SQLite walks the JSON array in C without taking the GIL back per row
_INSERT_INBOX_JSON = (
    "INSERT INTO points_inbox(series_id, ts, value) "
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
    nsamples: int  # estimate used for the pending bound
    version: str | None = None
    decode: Callable[[bytes], Batch] | None = None
    check: Callable[[Batch], None] | None = None
    rows: list[tuple[int, int, float]] | None = None  # fast path: (series_id, ts_ms, value) in arrival order
    samples: int = 0  # decoded counts (what the answer reports)
    events: int = 0
    gen: int = -1  # series-cache generation `rows` were built with (submit_decoded)


_SAMPLES_SLOT = Batch.__dict__["samples"]


class LazyBatch(Batch):
    """A Batch whose `samples` are built from the validated wire dicts on first access.

    The fast ingest path stores rows straight from the parsed JSON; Sample objects are only made when an
    extension or hook reads `batch.samples`.
    """

    __slots__ = ("_wire_samples",)

    def __init__(self, batch_id: str, agent: str, sent_at: float, wire_samples: list[dict[str, Any]], events: list[Any]) -> None:
        Batch.__init__(self, batch_id, agent, sent_at, [], events)
        self._wire_samples = wire_samples

    @property  # type: ignore[override]
    def samples(self) -> list[Sample]:
        ws = self._wire_samples
        if ws is not None:
            _SAMPLES_SLOT.__set__(self, [Sample(d["name"], float(d["value"]), float(d["ts"]), d.get("tags") or {}) for d in ws])
            self._wire_samples = None
        return _SAMPLES_SLOT.__get__(self)  # type: ignore[no-any-return]

    @samples.setter
    def samples(self, v: list[Sample]) -> None:
        _SAMPLES_SLOT.__set__(self, v)
        self._wire_samples = None


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
    merges: int = 0
    merged_rows: int = 0
    merge_seconds: float = 0.0


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
        #: agent -> {(metric, tags items as sent): series id}; the fast path's validated-series cache
        self._fast: dict[str, dict[tuple[Any, ...], int]] = {}
        self._fast_size = 0
        self._gen = 0
        #: rows committed to points_inbox and not yet moved into points
        self._inbox = 0
        #: a group of at least this many batches (the writer is busy) goes to the inbox
        self.inbox_min_group = 2
        #: move the inbox into points once it holds this many rows, or when no batch came for merge_idle s
        self.merge_rows = 200_000
        self.merge_idle = 0.02
        #: insert buffered rows as one JSON statement per batch (set when other threads decode: no per-row
        #: GIL hand-over); executemany otherwise
        self.json_rows = False
        self._thread: threading.Thread | None = None
        self._ckpt_thread: threading.Thread | None = None
        self._ckpt_stop = threading.Event()

    # ------------------------------------------------------------ lifecycle

    def migrate(self) -> None:
        schema.migrate(self.conn)
        self._inbox = self.conn.execute("SELECT count(*) FROM points_inbox").fetchone()[0]
        self._merge()  # rows a crash left in the inbox
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
        self, raw: bytes, decode: Callable[[bytes], Batch] | None = None, check: Callable[[Batch], None] | None = None, *, version: str | None = None
    ) -> IngestItem:
        """Queue an undecoded batch: the writer thread decodes it (no GIL ping-pong with the event loop).

        With `decode` None the writer's fast path parses it: a batch whose series are all known goes from
        the parsed JSON straight to rows (its `batch.samples` are built only if something reads them).

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
            if self._inbox:
                try:
                    item = self._q.get(timeout=self.merge_idle)
                except queue.Empty:
                    self._merge()
                    continue
            else:
                item = self._q.get()
            if item is _STOP:
                self._merge()
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
            if jobs or stop:
                self._merge()  # maintenance (rollups) and readers after a stop see every committed row
            for j in jobs:
                self._job(j)
            if stop:
                return

    def _merge(self) -> None:
        """Move the inbox into points: one sorted INSERT, so each series' pages are written once per merge."""
        if not self._inbox:
            return
        conn = self.conn
        t0 = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            n = schema.merge_inbox(conn)
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.error("moving buffered rows into points failed; will retry", extra={"error": str(e), "rows": self._inbox})
            return
        self._inbox = 0
        st = self.stats
        st.merges += 1
        st.merged_rows += n
        st.merge_seconds += time.perf_counter() - t0

    def _decode(self, group: list[IngestItem]) -> list[IngestItem]:
        ok: list[IngestItem] = []
        for it in group:
            if it.batch is None:
                try:
                    assert it.raw is not None
                    if it.decode is None:
                        it.batch = self._fast_decode(it)
                    else:
                        it.batch = it.decode(it.raw)
                    if it.check is not None:
                        it.check(it.batch)
                except Exception as e:  # noqa: BLE001 — reported to the waiting request
                    self._done([it], [e])
                    continue
            if it.gen >= 0 and it.gen != self._gen:
                it.rows = None  # decoded against series ids that were rolled back since: resolve them again
            if it.rows is None:
                it.samples = len(it.batch.samples)
            it.events = len(it.batch.events)
            ok.append(it)
        return ok

    def _fast_reset(self) -> None:
        self._fast = {}
        self._fast_size = 0
        self._gen += 1

    def _fast_decode(self, it: IngestItem) -> Batch:
        batch, rows, _gen = self.decode(it.raw)  # type: ignore[arg-type]
        if rows is not None:
            it.rows = rows
            it.samples = len(rows)
        return batch

    def decode(self, raw: bytes) -> tuple[Batch, list[tuple[int, int, float]] | None, int]:
        """Parse and validate a batch; for batches whose series are all known, also build its rows.

        Accepts exactly what `checks.model.decode_batch` accepts: on the first doubt (an unknown series, a
        wrong type, an odd field) the parsed document goes to `decode_batch_obj`, which names the bad field.
        """
        gen = self._gen
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise WireError("", f"malformed JSON: {e}") from None
        if type(obj) is dict and obj.keys() <= _BATCH_KEYS and obj.get("version", model.WIRE_VERSION) == model.WIRE_VERSION:
            bid, agent, sent_at = obj.get("batch_id"), obj.get("agent"), obj.get("sent_at")
            rs, evs = obj.get("samples", []), obj.get("events", [])
            if (
                type(bid) is str and 8 <= len(bid) <= 128 and bid.isprintable()
                and type(agent) is str and 1 <= len(agent) <= 255
                and (type(sent_at) is float or type(sent_at) is int) and _MIN_TS <= sent_at <= _MAX_TS
                and type(rs) is list and type(evs) is list
            ):
                cache = self._fast.get(agent)
                rows = self._fast_rows(rs, cache) if cache is not None else None
                if rows is not None:
                    events = [decode_event(e, f"events[{i}]") for i, e in enumerate(evs)]
                    return LazyBatch(bid, agent, float(sent_at), rs, events), rows, gen
        return decode_batch_obj(obj), None, gen

    def submit_decoded(
        self, batch: Batch, raw: bytes | None, rows: list[tuple[int, int, float]] | None, gen: int, *, version: str | None = None
    ) -> cf.Future[str]:
        """Queue a batch decoded by `decode` on another thread (rows are used if the series cache is unchanged)."""
        n = len(rows) if rows is not None else len(batch.samples)
        n += len(batch.events)
        with self._lock:
            if self._pending + n > self.max_pending_samples and self._pending > 0:
                raise Overloaded(1.0 + self._pending / 200_000)
            self._pending += n
        fut: cf.Future[str] = cf.Future()
        it = IngestItem(batch, raw, fut, n, version, rows=rows, samples=n - len(batch.events), events=len(batch.events))
        it.gen = gen
        self._q.put(it)
        return fut

    @staticmethod
    def _fast_rows(rs: list[Any], cache: dict[tuple[Any, ...], int]) -> list[tuple[int, int, float]] | None:
        """(series_id, ts_ms, value) for every sample, or None unless all are valid samples of known series.

        A cache key is (name, tags items as sent): it only exists for a name and tags that passed full
        validation before, so a hit needs only the value and the timestamp checked.
        """
        rows: list[tuple[int, int, float]] = []
        append = rows.append
        get = cache.get
        isfinite = math.isfinite
        lo, hi = _MIN_TS, _MAX_TS
        try:
            for d in rs:
                n = len(d)
                if n == 4:
                    tags = d["tags"]
                    sid = get((d["name"], tuple(tags.items()) if tags is not None else ()))
                elif n == 3:
                    sid = get((d["name"], ()))
                else:
                    return None
                if sid is None:
                    return None
                value = d["value"]
                ts = d["ts"]
                tv = type(value)
                if tv is float:
                    if not isfinite(value):
                        return None
                elif tv is int:
                    value = float(value)
                else:
                    return None
                tt = type(ts)
                if (tt is not float and tt is not int) or not (lo <= ts <= hi):
                    return None
                append((sid, round(ts * 1000), value))
        except (KeyError, TypeError, AttributeError):  # not a dict, a missing field, unhashable tags...
            return None
        return rows

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
        self._fast_reset()
        self._fast_size = 0
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
        # busy (several batches waiting, or rows already buffered): append to the inbox, merged later in bulk;
        # otherwise straight into points, so a lone client reads its batch as soon as it is answered
        to_inbox = self._inbox > 0 or len(group) >= self.inbox_min_group
        insert = _INSERT_INBOX if to_inbox else _INSERT_POINTS
        buffered = 0
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
                    rows = it.rows
                    if rows is None:
                        rows = []
                        append = rows.append
                        fast = self._fast.get(agent)
                        if fast is None:
                            fast = self._fast[agent] = {}
                        for s in b.samples:
                            tags = s.tags
                            fkey = (s.name, tuple(tags.items()))
                            if "host" not in tags:
                                tags = {**tags, "host": agent}
                            key = dumps(tags, option=_SORT)
                            sid = sids.get((s.name, key))
                            if sid is None:
                                sid = self._sid(s.name, key, tags["host"], batch_new)
                            if fkey not in fast:
                                fast[fkey] = sid
                                self._fast_size += 1
                            append((sid, round(s.ts * 1000), s.value))
                    if rows:
                        # arrival order: of two samples of a series at the same ms, the later wins. executemany
                        # binds each row in C and steps it without the GIL; sorting first costs more than it saves
                        if to_inbox and self.json_rows:
                            conn.execute(_INSERT_INBOX_JSON, (dumps(rows),))
                        else:
                            conn.executemany(insert, rows)
                    if rows and not to_inbox:  # (the inbox marks its ranges dirty when it is merged)
                        # dirty range per series (merged for the group: a range left by a batch rolled back
                        # below only makes the next rollup recompute a few minutes)
                        dget = dirty.get
                        for sid, ts, _v in rows:
                            d = dget(sid)
                            if d is None:
                                dirty[sid] = [ts, ts]
                            elif ts < d[0]:
                                d[0] = ts
                            elif ts > d[1]:
                                d[1] = ts
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
                    if batch_new:
                        self._fast_reset()  # it may name series ids that were rolled back
                        self._fast_size = 0
                    log.exception("batch failed to store, rolled back", extra={"batch_id": b.batch_id, "agent": b.agent})
                    results.append(e)
                    continue
                new_keys.extend(batch_new)
                if to_inbox:
                    buffered += len(rows)
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
            self._fast_reset()
            self._fast_size = 0
            log.error("group commit failed", extra={"batches": len(group), "error": f"{type(e).__name__}: {e}"})
            self._done(group, [e] * len(group))
            if not isinstance(e, Exception):
                raise
            return
        self._inbox += buffered
        st = self.stats
        st.commits += 1
        st.commit_seconds += time.perf_counter() - t0
        stored = [it for it, r in zip(group, results) if r is STORED]
        for it in stored:
            st.batches += 1
            st.samples += it.samples
            st.events += it.events
        if self._fast_size > FAST_CACHE_MAX:
            self._fast_reset()
            self._fast_size = 0
        st.duplicates += sum(1 for r in results if r is DUPLICATE)
        st.failed_batches += sum(1 for r in results if isinstance(r, BaseException))
        if stored and self.on_committed is not None:
            try:
                self.on_committed(stored)
            except Exception:  # noqa: BLE001
                log.exception("post-commit hook failed")
        self._done(group, results)
        if self._inbox >= self.merge_rows:
            self._merge()

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
