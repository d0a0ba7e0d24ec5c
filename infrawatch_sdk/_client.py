"""The SDK client: bounded queue, background sender thread, module attribution, drop accounting."""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from functools import wraps
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

if TYPE_CHECKING:
    import http.client

# http.client, gzip, json and traceback are imported lazily: importing the SDK must cost next to nothing.

log = logging.getLogger("infrawatch_sdk")

#: module of the request being served (set by the web middleware); SQL and exceptions inherit it
current_module: contextvars.ContextVar[str | None] = contextvars.ContextVar("infrawatch_module", default=None)
current_endpoint: contextvars.ContextVar[str | None] = contextvars.ContextVar("infrawatch_endpoint", default=None)

_STDLIB_PREFIXES = tuple({p for p in (sys.prefix, sys.base_prefix, sys.exec_prefix) if p})


def _in_app(filename: str) -> bool:
    return not ("site-packages" in filename or "dist-packages" in filename or filename.startswith("<")
                or (filename.startswith(_STDLIB_PREFIXES) and "/lib/python" in filename))


def exception_payload(exc: BaseException, max_frames: int = 50) -> dict[str, Any]:
    """type, message, frames (outermost first, with in_app) and a text stack, chained causes included."""
    import traceback

    frames: list[dict[str, Any]] = []
    tb = exc.__traceback__
    for fs, lineno in traceback.walk_tb(tb):
        co = fs.f_code
        frames.append(
            {
                "file": co.co_filename,
                "line": lineno,
                "function": co.co_name,
                "module": fs.f_globals.get("__name__", ""),
                "in_app": _in_app(co.co_filename),
            }
        )
    if len(frames) > max_frames:
        frames = frames[:10] + frames[-(max_frames - 10):]
    try:
        stack = "".join(traceback.format_exception(type(exc), exc, tb, limit=max_frames))[-16000:]
    except Exception:  # noqa: BLE001 - a broken __str__ must not break reporting
        stack = ""
    t = type(exc)
    name = t.__qualname__ if t.__module__ in ("builtins", "__main__") else f"{t.__module__}.{t.__qualname__}"
    try:
        msg = str(exc)
    except Exception:  # noqa: BLE001
        msg = "<unprintable>"
    return {"type": name, "message": msg[:2000], "frames": frames, "stack": stack}


class ModuleRules:
    """Maps a URL path, a Python package or a logger name to a business module (payment, order, ...)."""

    def __init__(self, rules: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.by_url: list[tuple[str, str]] = []
        self.by_pkg: list[tuple[str, str]] = []
        self.by_logger: list[tuple[str, str]] = []
        for module, r in (rules or {}).items():
            for p in r.get("url_prefixes", ()):
                self.by_url.append((p, module))
            for p in r.get("packages", ()):
                self.by_pkg.append((p, module))
            for p in r.get("loggers", ()):
                self.by_logger.append((p, module))
        for lst in (self.by_url, self.by_pkg, self.by_logger):
            lst.sort(key=lambda x: -len(x[0]))

    def for_path(self, path: str) -> str | None:
        for p, m in self.by_url:
            if path.startswith(p):
                return m
        return None

    @staticmethod
    def _dotted(lst: list[tuple[str, str]], name: str) -> str | None:
        for p, m in lst:
            if name == p or name.startswith(p + "."):
                return m
        return None

    def for_package(self, name: str) -> str | None:
        return self._dotted(self.by_pkg, name)

    def for_logger(self, name: str) -> str | None:
        return self._dotted(self.by_logger, name)

    def for_frames(self, frames: list[dict[str, Any]]) -> str | None:
        for f in reversed(frames):
            m = self.for_package(f.get("module") or "")
            if m:
                return m
        return None


class Client:
    """Queue + sender. All public methods are safe to call from any thread and never raise."""

    def __init__(
        self,
        agent_url: str = "http://127.0.0.1:9311",
        service: str | None = None,
        modules: Mapping[str, Mapping[str, Any]] | None = None,
        queue_size: int = 10_000,
        flush_interval: float = 1.0,
        timeout: float = 2.0,
        enabled: bool = True,
    ) -> None:
        import urllib.parse

        u = urllib.parse.urlsplit(agent_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"agent_url must be http(s)://host:port, got {agent_url!r}")
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.https = u.scheme == "https"
        self.path = (u.path.rstrip("/") or "") + "/v1/events"
        self.service = service
        self.rules = ModuleRules(modules)
        self.queue_size = queue_size
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.enabled = enabled
        self._q: deque[tuple] = deque()
        # identical exceptions are merged while queued so storms are counted exactly in bounded memory
        self._exc_index: dict[tuple, list] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self._conn: http.client.HTTPConnection | None = None
        self.dropped: dict[str, int] = {"queue_full": 0, "send_failed": 0}
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="infrawatch-sdk-sender", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ recording (hot path)

    def _put(self, item: tuple) -> None:
        if not self.enabled:
            return
        if len(self._q) >= self.queue_size:
            self.dropped["queue_full"] += 1
            return
        self._q.append(item)

    def record_request(self, duration: float, endpoint: str, method: str = "", status: int = 0,
                       module: str | None = None, error: bool = False) -> None:
        self._put(("request", time.time(), duration, module, endpoint, method, status, error))

    def record_sql(self, duration: float, statement: str, db: str | None = None, module: str | None = None,
                   error: bool = False) -> None:
        self._put(("sql", time.time(), duration, module or current_module.get(), statement, db, error))

    def record_span(self, name: str, duration: float, module: str | None = None, error: bool = False) -> None:
        self._put(("span", time.time(), duration, module or current_module.get(), name, error))

    def capture_exception(self, exc: BaseException | None = None, module: str | None = None,
                          tags: Mapping[str, str] | None = None, logger: str | None = None) -> None:
        try:
            if exc is None:
                exc = sys.exc_info()[1]
                if exc is None:
                    return
            if not self.enabled:
                return
            tb = exc.__traceback__
            last = None
            while tb is not None:
                last = tb
                tb = tb.tb_next
            loc = (last.tb_frame.f_code.co_filename, last.tb_lineno) if last else ("", 0)
            mod = module or current_module.get()
            endpoint = current_endpoint.get()
            key = (type(exc), str(exc)[:200], loc, mod, endpoint, logger, tuple(sorted(tags.items())) if tags else ())
            with self._lock:
                ent = self._exc_index.get(key)
                if ent is not None:
                    ent[1] += 1
                    return
                if len(self._q) >= self.queue_size:
                    self.dropped["queue_full"] += 1
                    return
                payload = exception_payload(exc)
                if mod is None:
                    mod = self.rules.for_frames(payload["frames"]) or (self.rules.for_logger(logger) if logger else None)
                ent = [key, 1, time.time(), mod, endpoint, payload, dict(tags or {}), logger]
                self._exc_index[key] = ent
                self._q.append(("exc_ref", ent))
        except Exception:  # noqa: BLE001 - never raise into the application
            pass

    # ------------------------------------------------------------ sending (background thread)

    def _drain(self, limit: int = 5000) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        q = self._q
        while q and len(out) < limit:
            it = q.popleft()
            kind = it[0]
            if kind == "request":
                _, ts, dur, mod, ep, method, status, err = it
                out.append({"type": "request", "ts": ts, "duration": dur, "module": mod, "endpoint": ep,
                            "method": method, "status": status, "error": bool(err or status >= 500)})
            elif kind == "sql":
                _, ts, dur, mod, stmt, db, err = it
                out.append({"type": "sql", "ts": ts, "duration": dur, "module": mod, "statement": stmt[:8192],
                            "db": db, "error": err})
            elif kind == "span":
                _, ts, dur, mod, name, err = it
                out.append({"type": "span", "ts": ts, "duration": dur, "module": mod, "endpoint": name, "error": err})
            elif kind == "exc_ref":
                ent = it[1]
                with self._lock:  # after this, an identical exception starts a new entry: no count is lost
                    self._exc_index.pop(ent[0], None)
                    _, count, ts, mod, ep, payload, tags, logger = ent
                ev = {"type": "exception", "ts": ts, "module": mod, "endpoint": ep, "exception": payload,
                      "count": count, "tags": tags}
                if logger:
                    ev["logger"] = logger
                out.append(ev)
        for ev in out:
            if ev.get("module") is None:
                ev.pop("module")
            if ev.get("endpoint") is None:
                ev.pop("endpoint", None)
        return out

    def _post(self, events: list[dict[str, Any]]) -> bool:
        import gzip
        import http.client
        import json

        body = gzip.compress(json.dumps({"service": self.service, "events": events}, default=str).encode(), 1)
        for attempt in (1, 2):
            try:
                if self._conn is None:
                    cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
                    self._conn = cls(self.host, self.port, timeout=self.timeout)
                self._conn.request("POST", self.path, body, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
                r = self._conn.getresponse()
                r.read()
                if 200 <= r.status < 300:
                    self.sent += len(events)
                    return True
                if r.status >= 500 or r.status == 429:
                    return False
                self.dropped["send_failed"] += len(events)  # 4xx: the agent will never accept these
                log.warning("infrawatch agent rejected events: HTTP %s", r.status)
                return True
            except (OSError, http.client.HTTPException):  # noqa: PERF203
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if attempt == 2:
                    return False
        return False

    def _run(self) -> None:
        pending: list[dict[str, Any]] = []
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                while True:
                    if not pending:
                        pending = self._drain()
                    if not pending:
                        break
                    self._idle.clear()
                    if self._post(pending):
                        pending = []
                    else:
                        # agent down: keep at most one queue's worth, count the rest as dropped
                        if len(pending) + len(self._q) > self.queue_size:
                            self.dropped["send_failed"] += len(pending)
                            pending = []
                        break
            except Exception:  # noqa: BLE001
                pending = []
            if not self._q and not pending:
                self._idle.set()
            if self._stop:
                return

    def flush(self, timeout: float = 2.0) -> bool:
        """Send what is queued; wait at most `timeout` seconds. True when everything was delivered."""
        self._idle.clear()
        self._wake.set()
        return self._idle.wait(timeout)

    def stats(self) -> dict[str, Any]:
        return {"queued": len(self._q), "sent": self.sent, "dropped": dict(self.dropped)}


# ---------------------------------------------------------------- module-level API

_client: Client | None = None


def init(agent_url: str | None = None, **kw: Any) -> Client:
    """Create the process-wide client (agent_url defaults to $INFRAWATCH_AGENT_URL or http://127.0.0.1:9311)."""
    global _client
    url = agent_url or os.environ.get("INFRAWATCH_AGENT_URL") or "http://127.0.0.1:9311"
    _client = Client(url, **kw)
    atexit.register(_client.flush, 2.0)
    return _client


def get_client() -> Client | None:
    return _client


def capture_exception(exc: BaseException | None = None, module: str | None = None, tags: Mapping[str, str] | None = None) -> None:
    c = _client
    if c is not None:
        c.capture_exception(exc, module=module, tags=tags)


def record_request(duration: float, endpoint: str, method: str = "", status: int = 0, module: str | None = None) -> None:
    c = _client
    if c is not None:
        c.record_request(duration, endpoint, method, status, module)


def record_sql(duration: float, statement: str, db: str | None = None, module: str | None = None, error: bool = False) -> None:
    c = _client
    if c is not None:
        c.record_sql(duration, statement, db, module, error)


class span:
    """Time a block or a function as a custom span: `with span("export-csv", module="order"):` or `@span("x")`."""

    __slots__ = ("name", "module", "_t0")

    def __init__(self, name: str, module: str | None = None) -> None:
        self.name = name
        self.module = module

    def __enter__(self) -> "span":
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        c = _client
        if c is not None:
            c.record_span(self.name, time.perf_counter() - self._t0, self.module, error=et is not None)
            if ev is not None and not isinstance(ev, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                c.capture_exception(ev, module=self.module)

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        name, module = self.name, self.module

        @wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            with span(name, module):
                return fn(*a, **k)

        return wrapper


def flush(timeout: float = 2.0) -> bool:
    c = _client
    return c.flush(timeout) if c is not None else True


def stats() -> dict[str, Any]:
    c = _client
    return c.stats() if c is not None else {"queued": 0, "sent": 0, "dropped": {}}


def install_excepthook() -> None:
    """Report uncaught exceptions (main thread and threads), then call the previous hooks."""
    prev = sys.excepthook
    prev_thread = threading.excepthook

    def hook(et: type[BaseException], ev: BaseException, tb: TracebackType | None) -> None:
        try:
            capture_exception(ev)
            flush(2.0)
        finally:
            prev(et, ev, tb)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        try:
            if args.exc_value is not None:
                capture_exception(args.exc_value)
        finally:
            prev_thread(args)

    sys.excepthook = hook
    threading.excepthook = thread_hook


@contextmanager
def module_context(module: str | None, endpoint: str | None = None) -> Iterator[None]:
    t1 = current_module.set(module)
    t2 = current_endpoint.set(endpoint)
    try:
        yield
    finally:
        current_module.reset(t1)
        current_endpoint.reset(t2)
