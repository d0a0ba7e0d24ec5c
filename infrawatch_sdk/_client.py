"""The SDK client: bounded queue, background sender thread, module attribution, redaction, drop accounting."""

from __future__ import annotations

import atexit
import contextvars
import logging
import math
import os
import re
import sys
import threading
import time
import weakref
from collections import deque
from functools import wraps
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    import http.client

# http.client, json, gzip and traceback are imported lazily: importing the SDK must cost next to nothing.

log = logging.getLogger("infrawatch_sdk")

#: business module of the code running now (set by the web middleware or `module(...)`); SQL and exceptions inherit it
current_module: contextvars.ContextVar[str | None] = contextvars.ContextVar("infrawatch_module", default=None)
#: route template of the request being served ("POST /pay/<int:oid>")
current_endpoint: contextvars.ContextVar[str | None] = contextvars.ContextVar("infrawatch_endpoint", default=None)

_STDLIB_PREFIXES = tuple({p for p in (sys.prefix, sys.base_prefix, sys.exec_prefix) if p})
_SDK_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: drop reasons reported by `stats()["dropped"]`
DROP_REASONS = ("queue_full", "agent_down", "rejected", "invalid", "disabled")

_TAG_KEY = re.compile(r"[a-z_][a-z0-9_]{0,63}\Z")
_RESERVED_TAGS = frozenset({"host", "module", "service"})
_MAX_FIELD = 256
_MAX_BATCH_BYTES = 1 << 20  # the agent accepts 4 MiB per request; stay well below


def _in_app(filename: str) -> bool:
    return not ("site-packages" in filename or "dist-packages" in filename or filename.startswith("<")
                or filename.startswith(_SDK_DIR)
                or (filename.startswith(_STDLIB_PREFIXES) and "/lib/python" in filename))


def _safe_str(x: Any, limit: int = 2000) -> str:
    try:
        return str(x)[:limit]
    except Exception:  # noqa: BLE001 - a broken __str__ must not break reporting
        return "<unprintable>"


def type_name(t: type) -> str:
    return t.__qualname__ if t.__module__ in ("builtins", "__main__") else f"{t.__module__}.{t.__qualname__}"


def exception_payload(exc: BaseException, max_frames: int = 50) -> dict[str, Any]:
    """type, message, frames (outermost first, with in_app) and a text stack, chained causes included."""
    import traceback

    frames: list[dict[str, Any]] = []
    tb = exc.__traceback__
    for fs, lineno in traceback.walk_tb(tb):
        co = fs.f_code
        frames.append({"file": co.co_filename, "line": lineno, "function": co.co_name,
                       "module": fs.f_globals.get("__name__", ""), "in_app": _in_app(co.co_filename)})
    if len(frames) > max_frames:
        frames = frames[:10] + frames[-(max_frames - 10):]
    try:
        stack = "".join(traceback.format_exception(type(exc), exc, tb, limit=max_frames))[-16000:]
    except Exception:  # noqa: BLE001
        stack = ""
    return {"type": type_name(type(exc)), "message": _safe_str(exc), "frames": frames, "stack": stack}


class ModuleRules:
    """Maps a URL path, a Python package or a logger name to a business module (payment, order, ...).

    `rules` is `{module: {"url_prefixes": [...], "packages": [...], "loggers": [...]}}`; the longest
    matching prefix wins. Raises ValueError on a malformed mapping (the Client turns it into config_error).
    """

    def __init__(self, rules: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.by_url: list[tuple[str, str]] = []
        self.by_pkg: list[tuple[str, str]] = []
        self.by_logger: list[tuple[str, str]] = []
        if rules is not None and not isinstance(rules, Mapping):
            raise ValueError("modules must be a mapping {module: {url_prefixes, packages, loggers}}")
        for module, r in (rules or {}).items():
            if not isinstance(module, str) or not module or not isinstance(r, Mapping):
                raise ValueError(f"modules[{module!r}] must map a module name to {{url_prefixes, packages, loggers}}")
            extra = set(r) - {"url_prefixes", "packages", "loggers"}
            if extra:
                raise ValueError(f"modules[{module!r}]: unknown key {sorted(extra)[0]!r} (url_prefixes, packages, loggers)")
            for key, lst in (("url_prefixes", self.by_url), ("packages", self.by_pkg), ("loggers", self.by_logger)):
                vals = r.get(key, ())
                if isinstance(vals, str) or not all(isinstance(v, str) and v for v in vals):
                    raise ValueError(f"modules[{module!r}].{key} must be a list of non-empty strings")
                lst.extend((v, module) for v in vals)
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
        return self._dotted(self.by_pkg, name) if self.by_pkg and name else None

    def for_logger(self, name: str) -> str | None:
        return self._dotted(self.by_logger, name) if self.by_logger and name else None

    def for_frames(self, frames: list[dict[str, Any]]) -> str | None:
        if not self.by_pkg:
            return None
        for f in reversed(frames):
            m = self.for_package(f.get("module") or "")
            if m:
                return m
        return None


_clients: weakref.WeakSet[Client] = weakref.WeakSet()


class Client:
    """Queue + sender. Neither the constructor nor any method raises or blocks the caller (flush and
    close wait at most their timeout). A bad configuration disables the client: `config_error` says
    why, and recordings are counted as dropped (`disabled`)."""

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
        self.service = service
        self.enabled = enabled
        self.config_error: str | None = None
        self.host, self.port, self.https, self.path = "127.0.0.1", 9311, False, "/v1/events"
        self.compress = False
        self.rules = ModuleRules()
        self.queue_size, self.flush_interval, self.timeout = 10_000, 1.0, 2.0
        try:
            self._configure(agent_url, service, modules, queue_size, flush_interval, timeout)
        except (ValueError, TypeError) as e:
            self.config_error = str(e)
            self.enabled = False
            log.warning("infrawatch SDK disabled by a configuration error: %s", e)
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.sent = 0
        self._q: deque[tuple] = deque()
        # identical exceptions are merged while queued so storms are counted exactly in bounded memory
        self._exc_index: dict[tuple, list] = {}
        self._setup_thread()
        _clients.add(self)

    def _configure(self, agent_url: Any, service: Any, modules: Any, queue_size: Any, flush_interval: Any,
                   timeout: Any) -> None:
        import urllib.parse

        if not isinstance(agent_url, str):
            raise ValueError(f"agent_url must be a string such as http://127.0.0.1:9311, got {agent_url!r}")
        u = urllib.parse.urlsplit(agent_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"agent_url must be http(s)://host:port, got {agent_url!r}")
        try:
            port = u.port
        except ValueError:
            raise ValueError(f"agent_url has a bad port: {agent_url!r}") from None
        if service is not None and not isinstance(service, str):
            raise ValueError(f"service must be a string, got {service!r}")
        for name, v, lo in (("queue_size", queue_size, 1), ("flush_interval", flush_interval, 0.001),
                            ("timeout", timeout, 0.001)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= lo or not math.isfinite(v):
                raise ValueError(f"{name} must be a number >= {lo}, got {v!r}")
        self.rules = ModuleRules(modules)
        self.host = u.hostname
        self.port = port or (443 if u.scheme == "https" else 80)
        self.https = u.scheme == "https"
        self.path = (u.path.rstrip("/") or "") + "/v1/events"
        # gzip costs more CPU than it saves on loopback; compress only towards another host
        self.compress = not (self.host in ("localhost", "::1") or self.host.startswith("127."))
        self.queue_size, self.flush_interval, self.timeout = int(queue_size), float(flush_interval), float(timeout)

    def _setup_thread(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self._conn: http.client.HTTPConnection | None = None
        self._pending: list[str] = []
        self._thread: threading.Thread | None = None
        if self.config_error is None:
            self._thread = threading.Thread(target=self._run, name="infrawatch-sdk-sender", daemon=True)
            self._thread.start()

    def _after_fork(self) -> None:
        """In a forked child (gunicorn/uwsgi workers): the parent's queue is not ours, the thread is gone."""
        self._q.clear()
        self._exc_index = {}
        self._setup_thread()

    # ------------------------------------------------------------ recording (hot path)

    def _put(self, item: tuple) -> None:
        if not self.enabled:
            if self.config_error is not None:
                self.dropped["disabled"] += 1
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
                          tags: Mapping[str, str] | None = None, logger: str | None = None,
                          endpoint: str | None = None, payload: dict[str, Any] | None = None,
                          auto: bool = False) -> None:
        """Report an exception (default: the one being handled). Every explicit call counts; the automatic
        hooks (`auto=True`: middleware, Flask signal, logging handler, span/module exit) skip an exception
        object this client already reported, so one failure seen by several hooks counts once."""
        try:
            if exc is None and payload is None:
                exc = sys.exc_info()[1]
                if exc is None:
                    return
            if not self.enabled:
                if self.config_error is not None:
                    self.dropped["disabled"] += 1
                return
            if exc is not None:
                if auto and getattr(exc, "_infrawatch_seen", None) is self:
                    return
                try:
                    exc._infrawatch_seen = self  # type: ignore[union-attr]
                except Exception:  # noqa: BLE001 - exceptions with __slots__
                    pass
                tb = exc.__traceback__
                last = None
                while tb is not None:
                    last = tb
                    tb = tb.tb_next
                loc: tuple = (last.tb_frame.f_code.co_filename, last.tb_lineno) if last else ("", 0)
                ident: tuple = (type(exc), _safe_str(exc, 200), loc)
            else:
                assert payload is not None
                fr = payload.get("frames") or [{}]
                ident = (payload.get("type"), payload.get("message", "")[:200], fr[-1].get("file"), fr[-1].get("line"))
            mod = module or current_module.get()
            ep = endpoint or current_endpoint.get()
            key = (ident, mod, ep, logger, tuple(sorted(tags.items())) if tags else ())
            with self._lock:
                ent = self._exc_index.get(key)
                if ent is not None:
                    ent[1] += 1
                    return
                if len(self._q) >= self.queue_size:
                    self.dropped["queue_full"] += 1
                    return
            if payload is None:
                assert exc is not None
                payload = exception_payload(exc)
            if mod is None:
                mod = self.rules.for_frames(payload["frames"]) or self.rules.for_logger(logger or "")
            with self._lock:
                ent = self._exc_index.get(key)
                if ent is not None:  # another thread queued the same one meanwhile
                    ent[1] += 1
                    return
                ent = [key, 1, time.time(), mod, ep, payload, dict(tags or {}), logger]
                self._exc_index[key] = ent
                self._q.append(("exc_ref", ent))
        except Exception:  # noqa: BLE001 - never raise into the application
            pass

    # ------------------------------------------------------------ sending (background thread)

    def _drain(self, limit: int = 5000) -> list[str]:
        """Turn queued tuples into JSON-encoded wire events: sanitised (the agent would reject the whole
        batch for one bad field), SQL literals redacted, at most `limit` events and about 1 MiB.
        Timings are formatted from templates with cached encoded strings: most of the SDK's cost per
        event is here, on the sender thread."""
        import json

        from infrawatch_sdk._redact import _cache as redacted, redact_sql

        enc = _json_cache
        out: list[str] = []
        append = out.append
        q = self._q
        popleft = q.popleft
        size = 0
        while q and len(out) < limit and size < _MAX_BATCH_BYTES:
            it = popleft()
            kind = it[0]
            try:
                if kind == "exc_ref":
                    ent = it[1]
                    with self._lock:  # after this, an identical exception starts a new entry: no count is lost
                        self._exc_index.pop(ent[0], None)
                        _, count, ts, mod, ep, payload, tags, logger = ent
                    ev: dict[str, Any] = {"type": "exception", "ts": ts, "exception": _clean_payload(payload),
                                          "count": count}
                    if tags:
                        ev["tags"] = _clean_tags(tags)
                    if logger:
                        ev["logger"] = _field(logger)
                    if mod:
                        ev["module"] = _field(mod)
                    if ep:
                        ev["endpoint"] = _field(ep)
                    js = json.dumps(ev, default=str)
                else:
                    dur = it[2]
                    if type(dur) is not float and (isinstance(dur, bool) or not isinstance(dur, (int, float))) \
                            or not 0 <= dur <= 604800:
                        self.dropped["invalid"] += 1
                        continue
                    mod = it[3]
                    tail = (',"module":' + (enc.get(mod) or _enc(mod))) if mod else ""
                    if kind == "sql":
                        stmt = it[4]
                        red = redacted.get(stmt) if type(stmt) is str else None
                        if red is None:
                            red = redact_sql(stmt if isinstance(stmt, str) else _safe_str(stmt, 16384))
                            if not red:
                                self.dropped["invalid"] += 1
                                continue
                        db = it[5]
                        if db:
                            tail += ',"db":' + (enc.get(db) or _enc(db))
                        js = '{"type":"sql","ts":%.6f,"duration":%.9g,"error":%s,"statement":%s%s}' % (
                            it[1], dur, "true" if it[6] else "false", enc.get(red) or _enc(red, 16384), tail)
                    elif kind == "request":
                        _, ts, _, _, ep, method, status, err = it
                        st = status if type(status) is int else 0
                        js = '{"type":"request","ts":%.6f,"duration":%.9g,"status":%d,"error":%s,"method":%s,"endpoint":%s%s}' % (
                            ts, dur, st, "true" if (err or st >= 500) else "false", enc.get(method) or _enc(method),
                            _enc(_route(ep)) if ep else '"unknown"', tail)
                    else:  # span
                        _, ts, _, _, ep, err = it
                        js = '{"type":"span","ts":%.6f,"duration":%.9g,"error":%s,"endpoint":%s%s}' % (
                            ts, dur, "true" if err else "false", enc.get(ep) or _enc(ep) if ep else '"unknown"', tail)
                size += len(js)
                append(js)
            except Exception:  # noqa: BLE001 - one odd recording must not stop the others
                self.dropped["invalid"] += 1
        return out

    def _post(self, events: list[str]) -> bool:
        """POST one batch. True when the batch is done with (accepted, or rejected for good); False to retry."""
        import http.client
        import json

        body = ('{"service":%s,"events":[%s]}' % (json.dumps(self.service), ",".join(events))).encode()
        headers = {"Content-Type": "application/json"}
        if self.compress:
            import gzip

            body = gzip.compress(body, 1)
            headers["Content-Encoding"] = "gzip"
        for attempt in (1, 2):
            reused = self._conn is not None
            try:
                if self._conn is None:
                    cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
                    self._conn = cls(self.host, self.port, timeout=self.timeout)
                self._conn.request("POST", self.path, body, headers)
                r = self._conn.getresponse()
                r.read()
            except (OSError, http.client.HTTPException, ValueError):
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if attempt == 2 or not reused:  # retry at once only a stale keep-alive connection
                    return False
                continue
            if 200 <= r.status < 300:
                self.sent += len(events)
                return True
            if r.status >= 500 or r.status == 429:
                return False  # agent busy: keep the batch and retry later
            self.dropped["rejected"] += len(events)  # 4xx: the agent will never accept these
            log.warning("infrawatch agent rejected %d events: HTTP %s", len(events), r.status)
            return True
        return False

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                while True:
                    if not self._pending:
                        self._pending = self._drain()
                    if not self._pending:
                        break
                    self._idle.clear()
                    if self._post(self._pending):
                        self._pending = []
                    else:
                        # agent down: keep at most one queue's worth, count the rest as dropped
                        if len(self._pending) + len(self._q) > self.queue_size:
                            self.dropped["agent_down"] += len(self._pending)
                            self._pending = []
                        break
            except Exception:  # noqa: BLE001
                self.dropped["agent_down"] += len(self._pending)
                self._pending = []
            if not self._q and not self._pending:
                self._idle.set()
            if self._stop:
                return

    def flush(self, timeout: float = 2.0) -> bool:
        """Send what is queued; wait at most `timeout` seconds. True when everything was delivered."""
        try:
            if self._thread is None or not self._thread.is_alive():
                return not self._q
            self._idle.clear()
            self._wake.set()
            return self._idle.wait(timeout)
        except Exception:  # noqa: BLE001
            return False

    def close(self, timeout: float = 2.0) -> bool:
        """Flush (at most `timeout` seconds), then stop the sender thread; later recordings are ignored."""
        ok = self.flush(timeout) if timeout > 0 else not self._q
        self.enabled = False
        self._stop = True
        self._wake.set()
        return ok

    def stats(self) -> dict[str, Any]:
        return {"queued": len(self._q) + len(self._pending), "sent": self.sent, "dropped": dict(self.dropped),
                "config_error": self.config_error}


_routes: dict[str, str] = {}
_json_cache: dict[Any, str] = {}


def _enc(v: Any, limit: int = _MAX_FIELD) -> str:
    """JSON text of a (truncated) string field, cached: modules, methods, endpoints, statements repeat."""
    import json

    js = json.dumps(v[:limit] if type(v) is str else _field(v))
    if len(_json_cache) >= 8192:
        _json_cache.clear()
    _json_cache[v] = js
    return js



def _route(ep: Any) -> str:
    """Endpoints arrive as "METHOD /template" or "METHOD /raw/path": ids in raw paths become {id}."""
    r = _routes.get(ep)
    if r is None:
        from infrawatch_sdk.web import normalize_path

        r = normalize_path(_field(ep)) if isinstance(ep, str) else "unknown"
        if len(_routes) >= 4096:
            _routes.clear()
        _routes[ep] = r
    return r


def _field(v: Any) -> str:
    return (v if isinstance(v, str) else _safe_str(v))[:_MAX_FIELD]


def _clean_tags(tags: Mapping[Any, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in tags.items():
        if isinstance(k, str) and _TAG_KEY.match(k) and k not in _RESERVED_TAGS and len(out) < 16:
            out[k] = _field(v)
    return out


def _clean_payload(p: dict[str, Any]) -> dict[str, Any]:
    return {"type": _safe_str(p.get("type") or "Exception", 256), "message": _safe_str(p.get("message") or "", 2000),
            "frames": list(p.get("frames") or [])[:60], "stack": _safe_str(p.get("stack") or "", 16000)}


def _fork_child() -> None:
    for c in list(_clients):
        try:
            c._after_fork()
        except Exception:  # noqa: BLE001
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fork_child)


# ---------------------------------------------------------------- module-level API

_client: Client | None = None
_exit_timeout = 2.0


def init(agent_url: str | None = None, *, flush_at_exit: float = 2.0, **kw: Any) -> Client:
    """Create the process-wide client (agent_url defaults to $INFRAWATCH_AGENT_URL or http://127.0.0.1:9311).

    Never raises: a bad argument gives a disabled client whose `config_error` says what is wrong.
    At interpreter exit the queue is flushed for at most `flush_at_exit` seconds.
    """
    global _client, _exit_timeout
    url = agent_url or os.environ.get("INFRAWATCH_AGENT_URL") or "http://127.0.0.1:9311"
    old = _client
    try:
        _client = Client(url, **kw)
    except TypeError as e:  # an unknown keyword argument
        log.warning("infrawatch SDK disabled by a configuration error: %s", e)
        _client = Client(url, enabled=False)
        _client.config_error = str(e)
        _client.close(0)
    if old is not None and old is not _client:
        old.close(0)
    _exit_timeout = flush_at_exit if isinstance(flush_at_exit, (int, float)) else 2.0
    return _client


def _at_exit() -> None:
    c = _client
    if c is not None:
        c.flush(_exit_timeout)


atexit.register(_at_exit)


def get_client() -> Client | None:
    return _client


def capture_exception(exc: BaseException | None = None, module: str | None = None,
                      tags: Mapping[str, str] | None = None) -> None:
    c = _client
    if c is not None:
        c.capture_exception(exc, module=module, tags=tags)


def record_request(duration: float, endpoint: str, method: str = "", status: int = 0, module: str | None = None) -> None:
    c = _client
    if c is not None:
        c.record_request(duration, endpoint, method, status, module)


def record_sql(duration: float, statement: str, db: str | None = None, module: str | None = None,
               error: bool = False) -> None:
    c = _client
    if c is not None:
        c.record_sql(duration, statement, db, module, error)


class module:  # noqa: N801 - used like a function: `with iw.module("payment"):` / `@iw.module("order")`
    """Explicit module attribution for a block or a function; SQL, spans and exceptions inside inherit it."""

    __slots__ = ("name", "_token")

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> "module":
        self._token = current_module.set(self.name)
        return self

    def __exit__(self, et: Any, ev: BaseException | None, tb: TracebackType | None) -> None:
        if ev is not None and not isinstance(ev, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            c = _client
            if c is not None:
                c.capture_exception(ev, module=self.name, auto=True)
        current_module.reset(self._token)

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        name = self.name

        @wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            with module(name):
                return fn(*a, **k)

        return wrapper


class span:  # noqa: N801
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
                c.capture_exception(ev, module=self.module, auto=True)

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        name, mod = self.name, self.module

        @wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            with span(name, mod):
                return fn(*a, **k)

        return wrapper


def flush(timeout: float = 2.0) -> bool:
    c = _client
    return c.flush(timeout) if c is not None else True


def stats() -> dict[str, Any]:
    c = _client
    return c.stats() if c is not None else {"queued": 0, "sent": 0, "dropped": {}, "config_error": None}


def install_excepthook() -> None:
    """Report uncaught exceptions (main thread and threads), then call the previous hooks."""
    prev = sys.excepthook
    prev_thread = threading.excepthook

    def hook(et: type[BaseException], ev: BaseException, tb: TracebackType | None) -> None:
        try:
            c = _client
            if c is not None:
                c.capture_exception(ev, auto=True)
                c.flush(_exit_timeout)
        except Exception:  # noqa: BLE001
            pass
        prev(et, ev, tb)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        try:
            c = _client
            if c is not None and args.exc_value is not None:
                c.capture_exception(args.exc_value, auto=True)
        except Exception:  # noqa: BLE001
            pass
        prev_thread(args)

    sys.excepthook = hook
    threading.excepthook = thread_hook
