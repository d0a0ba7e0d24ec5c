"""Runs one sink: a durable, bounded SQLite outbox, FIFO delivery, retry with backoff, drop accounting."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import orjson

from checks.model import Batch, Event, Sample, WireError, decode_batch, encode_batch

from collector.sinks.base import Sink, SinkError

log = logging.getLogger("collector.sink")


@dataclass
class SinkStats:
    depth_batches: int = 0
    depth_bytes: int = 0
    enqueued_batches: int = 0
    sent_batches: int = 0
    sent_samples: int = 0
    dropped_batches: Counter[str] = field(default_factory=Counter)
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    last_success: float | None = None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox(id INTEGER PRIMARY KEY AUTOINCREMENT, batch_id TEXT NOT NULL, size INTEGER NOT NULL, body BLOB NOT NULL);
"""


def trusted_decode(body: bytes) -> Batch:
    """Decode a batch the collector itself validated before queueing it (no per-field checks: ~half the CPU)."""
    try:
        o = orjson.loads(body)
        return Batch(
            o["batch_id"], o["agent"], float(o["sent_at"]),
            [Sample(d["name"], float(d["value"]), float(d["ts"]), d.get("tags") or {}) for d in o.get("samples", ())],
            [Event(d["kind"], float(d["ts"]), d.get("message", ""), d.get("tags") or {}, d.get("data") or {}) for d in o.get("events", ())],
            o.get("version", 1),
        )
    except orjson.JSONDecodeError:
        return decode_batch(body)  # raises WireError naming the problem


class Outbox:
    """The durable FIFO (one SQLite file per sink). Thread-safe."""

    def __init__(self, path: str | Path, max_bytes: int) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        n, b = self._conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM outbox").fetchone()
        self.depth = int(n)
        self.bytes = int(b)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def put(self, items: Iterable[tuple[str, bytes]]) -> int:
        """Append (batch_id, json) items; drop the oldest while over max_bytes. Returns batches dropped."""
        rows = [(bid, len(body), body) for bid, body in items]
        if not rows:
            return 0
        dropped = 0
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany("INSERT INTO outbox(batch_id, size, body) VALUES (?, ?, ?)", rows)
                self.depth += len(rows)
                self.bytes += sum(r[1] for r in rows)
                while self.bytes > self.max_bytes and self.depth > 0:
                    old = c.execute("SELECT id, size FROM outbox ORDER BY id LIMIT 256").fetchall()
                    cut: list[int] = []
                    for oid, size in old:
                        if self.bytes <= self.max_bytes:
                            break
                        cut.append(oid)
                        self.bytes -= size
                        self.depth -= 1
                    if cut:
                        c.execute("DELETE FROM outbox WHERE id <= ?", (cut[-1],))
                        dropped += len(cut)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                n, b = c.execute("SELECT count(*), coalesce(sum(size), 0) FROM outbox").fetchone()
                self.depth, self.bytes = int(n), int(b)
                raise
        return dropped

    def peek(self, n: int) -> list[tuple[int, str, bytes]]:
        with self._lock:
            return self._conn.execute("SELECT id, batch_id, body FROM outbox ORDER BY id LIMIT ?", (n,)).fetchall()

    def remove(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                rows = c.execute(
                    f"SELECT count(*), coalesce(sum(size), 0) FROM outbox WHERE id IN ({','.join('?' * len(ids))})", list(ids)
                ).fetchone()
                c.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(ids))})", list(ids))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            self.depth -= int(rows[0])
            self.bytes -= int(rows[1])


class SinkRunner:
    """Delivers committed batches to one sink from its own durable queue; never blocks ingest."""

    def __init__(
        self,
        sink: Sink,
        queue_path: str | Path,
        *,
        queue_max_bytes: int = 256 * 1024 * 1024,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
        max_batches_per_send: int = 50,
        emit_metric: Callable[[str, float, dict[str, str]], None] | None = None,
        name: str | None = None,
    ) -> None:
        self.sink = sink
        self.name = name or getattr(sink, "name", None) or type(sink).__name__
        self.outbox = Outbox(queue_path, queue_max_bytes)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_batches_per_send = max_batches_per_send
        self.emit_metric = emit_metric
        self.stats = SinkStats(depth_batches=self.outbox.depth, depth_bytes=self.outbox.bytes)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._started_sink = False
        self._idle: asyncio.Event | None = None

    # ------------------------------------------------------------ producer side (any thread)

    def enqueue(self, batch: Batch) -> None:
        self.enqueue_raw(batch.batch_id, encode_batch(batch))

    def enqueue_raw(self, batch_id: str, body: bytes) -> None:
        self.enqueue_many([(batch_id, body)])

    def enqueue_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Durably queue (batch_id, checks.model JSON) items. Thread-safe; never waits for the sink."""
        dropped = self.outbox.put(items)
        st = self.stats
        st.enqueued_batches += len(items)
        if dropped:
            st.dropped_batches["overflow"] += dropped
            log.warning(
                "sink queue full, dropped oldest batches",
                extra={"sink": self.name, "dropped": dropped, "dropped_total": st.dropped_batches["overflow"], "queue_max_bytes": self.outbox.max_bytes},
            )
        self._sync_depth()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # loop closed
                pass

    def _sync_depth(self) -> None:
        self.stats.depth_batches = self.outbox.depth
        self.stats.depth_bytes = self.outbox.bytes

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"sink-{self.name}")

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty (True) or the timeout passes (False)."""
        end = time.monotonic() + timeout
        while self.outbox.depth > 0:
            if time.monotonic() >= end or self._task is None or self._task.done():
                return self.outbox.depth == 0
            if self._wake is not None:
                self._wake.set()
            await asyncio.sleep(0.02)
        return True

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._task)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                try:
                    await self._task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
            except Exception:  # noqa: BLE001
                pass
            self._task = None
        if self._started_sink:
            try:
                await self.sink.close()
            except Exception as e:  # noqa: BLE001
                log.warning("sink close failed", extra={"sink": self.name, "error": f"{type(e).__name__}: {e}"})
            self._started_sink = False
        self.outbox.close()

    # ------------------------------------------------------------ delivery

    def _delay(self, err: SinkError | None) -> float:
        if err is not None and err.retry_after is not None:
            return max(0.0, min(err.retry_after, max(self.backoff_max, 1.0) * 5))
        n = max(1, self.stats.consecutive_failures)
        cap = min(self.backoff_max, self.backoff_initial * 2 ** min(n - 1, 30))
        return random.uniform(cap / 2, cap)

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        self._wake.clear()
        try:
            async with asyncio.timeout(seconds):
                while not self._stopping:
                    await self._wake.wait()
                    self._wake.clear()
        except TimeoutError:
            pass

    def _failed(self, err: str) -> None:
        st = self.stats
        st.failures += 1
        st.consecutive_failures += 1
        st.last_error = err

    async def _ensure_started(self) -> bool:
        if self._started_sink:
            return True
        try:
            await self.sink.start()
        except Exception as e:  # noqa: BLE001 — a dead destination must not kill the runner
            self._failed(f"start: {type(e).__name__}: {e}")
            delay = self._delay(e if isinstance(e, SinkError) else None)
            log.warning("sink failed to start, retrying", extra={"sink": self.name, "error": str(e), "retry_in": round(delay, 2)})
            await self._sleep(delay)
            return False
        self._started_sink = True
        return True

    def _take(self, n: int) -> tuple[list[Batch], list[int], list[int]]:
        """Oldest `n` queued batches, decoded (off the event loop). Returns (batches, their ids, undecodable ids)."""
        batches: list[Batch] = []
        ids: list[int] = []
        bad: list[int] = []
        for oid, bid, body in self.outbox.peek(n):
            try:
                batches.append(trusted_decode(body))
                ids.append(oid)
            except (WireError, ValueError, KeyError, TypeError) as e:
                log.error("undecodable batch in sink queue, dropped", extra={"sink": self.name, "batch_id": bid, "error": str(e)})
                bad.append(oid)
        return batches, ids, bad

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            if self.outbox.depth == 0:
                self._wake.clear()
                if self.outbox.depth == 0:
                    try:
                        async with asyncio.timeout(1.0):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                continue
            if not await self._ensure_started():
                continue
            batches, ids, bad = await asyncio.to_thread(self._take, self.max_batches_per_send)
            if not ids and not bad:
                continue
            if bad:
                self.stats.dropped_batches["corrupt"] += len(bad)
                await asyncio.to_thread(self.outbox.remove, bad)
                self._sync_depth()
            if not batches:
                continue
            try:
                await self.sink.send(batches)
            except SinkError as e:
                if e.retryable:
                    self._failed(str(e))
                    delay = self._delay(e)
                    lvl = logging.WARNING if self.stats.consecutive_failures in (1, 5) or self.stats.consecutive_failures % 50 == 0 else logging.DEBUG
                    log.log(lvl, "sink send failed, will retry", extra={"sink": self.name, "error": str(e), "retry_in": round(delay, 2),
                                                                       "failures": self.stats.consecutive_failures, "queued": self.outbox.depth})
                    await self._sleep(delay)
                    continue
                self._failed(str(e))
                self.stats.dropped_batches["rejected"] += len(ids)
                log.error("sink refused batches permanently, dropped them",
                          extra={"sink": self.name, "batches": len(ids), "error": str(e), "dropped_total": self.stats.dropped_batches["rejected"]})
                await asyncio.to_thread(self.outbox.remove, ids)
                self._sync_depth()
                continue
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 — a buggy sink is retried, never fatal
                self._failed(f"{type(e).__name__}: {e}")
                delay = self._delay(None)
                log.exception("sink send raised unexpectedly, will retry", extra={"sink": self.name, "retry_in": round(delay, 2)})
                await self._sleep(delay)
                continue
            await asyncio.to_thread(self.outbox.remove, ids)
            st = self.stats
            if st.consecutive_failures:
                log.info("sink delivering again", extra={"sink": self.name, "after_failures": st.consecutive_failures, "queued": self.outbox.depth})
            st.consecutive_failures = 0
            st.sent_batches += len(batches)
            st.sent_samples += sum(len(b.samples) for b in batches)
            st.last_success = time.time()
            self._sync_depth()

    # ------------------------------------------------------------ self metrics

    def metrics(self) -> list[tuple[str, float, dict[str, str]]]:
        st = self.stats
        t = {"sink": self.name}
        out = [
            ("collector.sink.queue_depth_batches", float(self.outbox.depth), t),
            ("collector.sink.queue_bytes", float(self.outbox.bytes), t),
            ("collector.sink.sent_batches_total", float(st.sent_batches), t),
            ("collector.sink.sent_samples_total", float(st.sent_samples), t),
            ("collector.sink.failures_total", float(st.failures), t),
        ]
        for reason in ("overflow", "rejected", "corrupt"):
            out.append(("collector.sink.dropped_total", float(st.dropped_batches[reason]), {"sink": self.name, "reason": reason}))
        return out


__all__ = ["SinkRunner", "SinkStats", "Outbox"]
