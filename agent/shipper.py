"""Shipper: buffer batches → gzip JSON → POST /api/v1/batches, with retry, backoff and Retry-After.

HTTP goes through the standard library's `http.client` on one keep-alive connection, in one daemon
worker thread (importing aiohttp would cost ~15 MiB of RSS; the agent aims at ≤ 40 MiB). A batch
leaves the buffer only after a 2xx; a permanent refusal (400-class) is dropped and counted so the
agent never blocks forever on one bad batch; auth and URL problems keep the data and back off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import http.client
import logging
import queue
import random
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from checks.model import Batch, Event, Sample, encode_batch
from checks.runtime.retry import parse_retry_after

from agent.buffer import Buffer, Pending
from agent.config import AgentConfig, CollectorTarget

log = logging.getLogger("infrawatch.agent.shipper")

def _version() -> str:
    try:
        from importlib.metadata import version

        return version("infrawatch")
    except Exception:  # noqa: BLE001 - not installed as a distribution (running from a checkout)
        return "0"


USER_AGENT = f"infrawatch-agent/{_version()}"
API_PATH = "/api/v1/batches"
MAX_ERROR_BODY = 500
#: urgent readings (`expedite`) leave this soon, batched with whatever else arrives meanwhile (seconds)
URGENT_DELAY = 0.2

# Outcome kinds
OK = "ok"
RETRY = "retry"  # transient: network, 5xx, 408, 429 — back off (or Retry-After) and resend the same batch
CONFIG = "config"  # 401/403/404/3xx: our configuration is wrong — keep data, back off to the maximum
REJECT = "reject"  # 400/422/...: the batch will never be accepted — drop it, count it, log loudly
TOO_LARGE = "too_large"  # 413: split the batch


@dataclass(slots=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Outcome:
    kind: str
    #: low-cardinality failure reason for agent.ship.failures_total
    reason: str = ""
    detail: str = ""
    status: int | None = None
    retry_after: float | None = None


@dataclass(slots=True)
class ShipStats:
    batches: int = 0
    readings: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    consecutive_failures: int = 0
    last_success: float | None = None


def classify(ans: HttpAnswer) -> Outcome:
    """Map an HTTP answer to what the shipper does with the batch."""
    s = ans.status
    detail = ans.body[:MAX_ERROR_BODY].decode("utf-8", "replace").strip()
    if 200 <= s < 300:
        return Outcome(OK, status=s)
    if s in (429, 503):
        return Outcome(RETRY, "throttled" if s == 429 else "http_5xx", detail, s, parse_retry_after(ans.headers.get("retry-after")))
    if s >= 500 or s == 408:
        return Outcome(RETRY, "http_5xx" if s >= 500 else "http_4xx", detail, s)
    if s in (401, 403):
        return Outcome(CONFIG, "auth", detail, s)
    if s == 413:
        return Outcome(TOO_LARGE, "too_large", detail, s)
    if s in (404, 405) or 300 <= s < 400 or s < 200:
        return Outcome(CONFIG, "bad_url", detail, s)
    return Outcome(REJECT, "rejected", detail, s)


class _Worker:
    """One daemon thread running blocking calls in order (never blocks interpreter exit)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, args=(self._q,), name=self._name, daemon=True)
            self._thread.start()
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._q.put((fut, fn, args))
        return fut

    @staticmethod
    def _run(q: "queue.SimpleQueue[Any]") -> None:
        while True:
            item = q.get()
            if item is None:
                return
            fut, fn, args = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # handed to the awaiting side
                fut.set_exception(e)

    def stop(self) -> None:
        """Let the thread exit after the calls already queued; a later submit starts a new one."""
        if self._thread is not None:
            self._q.put(None)
            self._q = queue.SimpleQueue()
            self._thread = None


class HttpClient:
    """Blocking keep-alive HTTP(S) client for one collector; use from a single thread."""

    def __init__(self, target: CollectorTarget, token: str | None) -> None:
        u = urlsplit(target.url)
        self.scheme = u.scheme
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.base = u.path.rstrip("/")
        self.token = token
        self.timeout = target.timeout
        self._ctx: ssl.SSLContext | None = None
        if self.scheme == "https":
            ctx = ssl.create_default_context(cafile=target.ca_file)
            if not target.tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._ctx = ctx
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._ctx is not None:
                self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self._ctx)
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        else:
            self._conn.timeout = timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def post(self, path: str, body: bytes, headers: dict[str, str], timeout: float | None = None) -> HttpAnswer:
        """POST; retries once on a fresh connection when a reused keep-alive connection was closed."""
        t = self.timeout if timeout is None else timeout
        hdrs = {"User-Agent": USER_AGENT, "Content-Length": str(len(body)), **headers}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        for attempt in (0, 1):
            reused = self._conn is not None and self._conn.sock is not None
            conn = self._connection(t)
            try:
                conn.request("POST", self.base + path, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                ans = HttpAnswer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
                if resp.will_close:
                    self.close()
                return ans
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if attempt == 0 and reused:
                    continue  # the server closed an idle keep-alive connection; the batch id makes a resend safe
                raise e
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")


def build_body(p: Pending, agent: str) -> bytes:
    """Gzipped JSON Batch for a pending batch."""
    batch = Batch(
        p.batch_id,
        agent,
        time.time(),
        [Sample(s["name"], s["value"], s["ts"], s.get("tags") or {}) for s in p.samples],
        [Event(e["kind"], e["ts"], e.get("message", ""), e.get("tags") or {}, e.get("data") or {}) for e in p.events],
    )
    return gzip.compress(encode_batch(batch), compresslevel=6, mtime=0)


class Shipper:
    """Moves batches from the buffer to the collector until stopped; then flushes within a deadline."""

    def __init__(self, cfg: AgentConfig, buffer: Buffer, *, token: str | None = None) -> None:
        self.cfg = cfg
        self.ship = cfg.ship
        self.buffer = buffer
        self.stats = ShipStats()
        self.url = cfg.collector.url.rstrip("/") + API_PATH
        self.client = HttpClient(cfg.collector, token if token is not None else cfg.collector.resolve_token())
        self._worker = _Worker("infrawatch-shipper")
        self._backing_off = False
        #: monotonic time of the first reading buffered since the buffer was last emptied (the batch age
        #: bound); readings left from before a restart count as old enough to go at once
        self._pending_since: float | None = time.monotonic() - cfg.ship.flush_interval if buffer.stats.depth else None
        #: what the shipper is waiting on, and whether new data (not only a full batch) should wake it
        self._waiter: asyncio.Future[None] | None = None
        self._wake_on_data = False
        #: monotonic deadline set by `expedite` (urgent readings): ship by then rather than at the age bound
        self._urgent_due: float | None = None
        buffer.on_append = self._on_append

    def _on_append(self) -> None:
        """Called (on the loop thread) after every buffer append: starts the age clock, wakes the shipper."""
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        w = self._waiter
        if w is None or w.done():
            return
        if self._wake_on_data or (not self._backing_off and self._full()):
            w.set_result(None)

    def expedite(self, within: float = URGENT_DELAY) -> None:
        """Ship what is buffered within `within` seconds instead of at its flush_interval age (urgent readings).

        Still one batch for what is there; never cuts a backoff short (a down collector is not hammered).
        Call on the loop thread after the readings were appended.
        """
        due = time.monotonic() + within
        if self._urgent_due is None or due < self._urgent_due:
            self._urgent_due = due
        w = self._waiter
        if w is not None and not w.done() and not self._backing_off:
            w.set_result(None)

    def _full(self) -> bool:
        """The buffer holds at least one full batch (by count or bytes)."""
        st = self.buffer.stats
        return st.depth >= self.ship.max_samples or st.bytes >= self.ship.max_bytes

    # ------------------------------------------------------------ sending one batch

    def _post_blocking(self, p: Pending, timeout: float) -> tuple[HttpAnswer, int]:
        body = build_body(p, self.cfg.host)
        ans = self.client.post(API_PATH, body, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, timeout)
        return ans, len(body)

    async def send(self, p: Pending, timeout: float | None = None) -> Outcome:
        """POST one pending batch and settle it in the buffer according to the answer."""
        t = self.cfg.collector.timeout if timeout is None else timeout
        try:
            ans, gz = await asyncio.wrap_future(self._worker.submit(self._post_blocking, p, t))
        except (TimeoutError, OSError, http.client.HTTPException) as e:
            reason = "timeout" if isinstance(e, TimeoutError) else ("tls" if isinstance(e, ssl.SSLError) else "network")
            out = Outcome(RETRY, reason, f"{type(e).__name__}: {e}")
            self.buffer.release(p.batch_id)
            return self._failed(p, out)
        out = classify(ans)
        if out.kind == OK:
            n = self.buffer.commit(p.batch_id, p.readings)
            st = self.stats
            was_failing = st.consecutive_failures > 0
            st.batches += 1
            st.readings += n
            st.consecutive_failures = 0
            st.last_success = time.time()
            level = logging.INFO if was_failing or st.batches == 1 else logging.DEBUG
            log.log(
                level,
                "shipped batch" if not was_failing else "collector reachable again, shipped batch",
                extra={"batch_id": p.batch_id, "samples": len(p.samples), "events": len(p.events), "bytes": p.nbytes, "gzip_bytes": gz, "resent": p.resent},
            )
            return out
        if out.kind == REJECT:
            n = self.buffer.reject(p.batch_id)
            self.stats.failures[out.reason] += 1
            log.error(
                "collector refused batch permanently, dropped it",
                extra={"batch_id": p.batch_id, "status": out.status, "readings": n, "rejected_total": self.buffer.stats.rejected, "body": out.detail},
            )
            return out
        if out.kind == TOO_LARGE:
            self.stats.failures[out.reason] += 1
            if self.buffer.split(p.batch_id):
                log.warning("collector refused batch as too large, splitting it", extra={"batch_id": p.batch_id, "bytes": p.nbytes, "gzip_bytes": gz})
            else:
                n = self.buffer.reject(p.batch_id)
                log.error(
                    "collector refused a single check run as too large, dropped it (lower ship.max_bytes or raise the collector's limit)",
                    extra={"batch_id": p.batch_id, "readings": n, "bytes": p.nbytes, "gzip_bytes": gz, "body": out.detail},
                )
            return out
        self.buffer.release(p.batch_id)
        return self._failed(p, out)

    def _failed(self, p: Pending, out: Outcome) -> Outcome:
        st = self.stats
        st.failures[out.reason] += 1
        st.consecutive_failures += 1
        return out

    def retry_delay(self, out: Outcome) -> float:
        """How long to wait before the next attempt after a failure."""
        if out.kind == CONFIG:
            return self.ship.backoff_max
        if out.retry_after is not None:
            return min(out.retry_after, max(self.ship.backoff_max, 1.0))
        n = max(1, self.stats.consecutive_failures)
        cap = min(self.ship.backoff_max, self.ship.backoff_initial * 2 ** min(n - 1, 30))
        return random.uniform(self.ship.backoff_initial / 2 if n == 1 else 0.0, cap)  # full jitter

    def _log_failure(self, out: Outcome, delay: float) -> None:
        extra = {"url": self.url, "reason": out.reason, "retry_in": round(delay, 2), "failures": self.stats.consecutive_failures}
        if out.status is not None:
            extra["status"] = out.status
        if out.detail:
            extra["error"] = out.detail
        if out.kind == CONFIG:
            msg = "collector refused our token, keeping data" if out.reason == "auth" else "collector URL looks wrong, keeping data"
            log.error(msg, extra=extra)
        elif out.status is not None:
            log.warning("collector busy or failing", extra=extra)
        else:
            log.warning("collector unreachable", extra=extra)

    # ------------------------------------------------------------ loops

    async def drain(self, stop: asyncio.Event | None = None) -> Outcome | None:
        """Send batches until the buffer is empty (None), an attempt fails (that outcome) or `stop` is set."""
        while stop is None or not stop.is_set():
            if self.buffer.stats.depth == 0:
                return None
            p = self.buffer.begin(self.ship.max_samples, self.ship.max_bytes)
            if p is None:
                return None
            out = await self.send(p)
            if out.kind in (RETRY, CONFIG):
                return out
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Ship until `stop` is set, then flush what is left within ship.shutdown_timeout.

        A batch leaves when its oldest reading is `flush_interval` old, or at once when the buffer holds
        a full batch (max_samples or max_bytes). With nothing buffered the shipper sleeps until the next
        append, so an agent whose checks run every 10 s ships once per cycle and wakes for nothing else.
        Readings left from before a restart go at once.
        """
        loop = asyncio.get_running_loop()
        stop_fut = loop.create_task(stop.wait(), name="shipper-stop")
        try:
            while not stop.is_set():
                since = self._pending_since
                if since is None:
                    await self._wait(stop_fut, None, on_data=True)
                    continue
                due = since + self.ship.flush_interval
                if self._urgent_due is not None:
                    due = min(due, self._urgent_due)
                delay = due - time.monotonic()
                if delay > 0 and not self._full():
                    await self._wait(stop_fut, delay, on_data=False)
                    if stop.is_set():
                        break
                    if due - time.monotonic() > 0 and not self._full():
                        continue  # woken early (urgent readings): recompute the deadline
                self._urgent_due = None
                out = await self._drain_guarded(stop)
                while out is not None and not stop.is_set():
                    delay = self.retry_delay(out)
                    self._log_failure(out, delay)
                    self._backing_off = True
                    await self._wait(stop_fut, delay, on_data=False)
                    if stop.is_set():
                        break
                    out = await self._drain_guarded(stop)
                self._backing_off = False
                if self.buffer.stats.depth == 0:
                    self._pending_since = self._urgent_due = None
            await self.flush(self.ship.shutdown_timeout)
        finally:
            stop_fut.cancel()
            self._worker.stop()

    async def _drain_guarded(self, stop: asyncio.Event) -> Outcome | None:
        try:
            return await self.drain(stop)
        except Exception:
            log.exception("shipper error")
            self.stats.consecutive_failures += 1
            return Outcome(RETRY, "internal")

    async def _wait(self, stop_fut: asyncio.Future[Any], timeout: float | None, *, on_data: bool) -> None:
        """Sleep until `timeout`, stop, a full batch (unless backing off) or, with `on_data`, any append."""
        w: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter, self._wake_on_data = w, on_data
        try:
            await asyncio.wait((stop_fut, w), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiter = None
            if not w.done():
                w.cancel()

    async def flush(self, timeout: float) -> bool:
        """Ship what is buffered for at most `timeout` seconds. True when the buffer was emptied."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        start_depth = self.buffer.stats.depth
        while True:
            remaining = end - loop.time()
            if remaining <= 0:
                break
            try:
                p = self.buffer.begin(self.ship.max_samples, self.ship.max_bytes)
            except Exception:
                log.exception("shipper error during flush")
                break
            if p is None:
                if start_depth:
                    log.info("flushed buffer before exit", extra={"readings": start_depth})
                return True
            try:
                out = await asyncio.wait_for(self.send(p, min(self.cfg.collector.timeout, remaining)), remaining)
            except TimeoutError:
                break
            if out.kind in (RETRY, CONFIG):
                delay = self.retry_delay(out) if out.kind == RETRY else remaining
                if delay >= end - loop.time():
                    self._log_failure(out, delay)
                    break
                await asyncio.sleep(delay)
        left = self.buffer.stats.depth
        log.warning("could not flush everything before exit; the rest stays on disk for the next start", extra={"readings_left": left})
        return left == 0

    def close(self) -> None:
        self._worker.stop()
