"""Agent local ingest: loopback HTTP for application events (POST /v1/events) and OTLP/HTTP traces and logs."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from agent import otlp
from agent.aggregate import KINDS, Aggregator
from checks.config import ByteSize, ConfigError, Duration
from checks.exception_log import ModuleMapper, ModuleRule, parse_stack
from checks.model import MAX_TS, MIN_TS, TAG_KEY_RE

log = logging.getLogger("infrawatch.agent.ingest")

#: the first exception after a quiet spell waits this long for company before it leaves (seconds)
EXC_HOLD = 0.05


@dataclass(frozen=True, kw_only=True)
class Config:
    """The `local_ingest:` section of agent.yaml."""

    #: host:port on loopback (the endpoint has no authentication: keep it local)
    listen: str = "127.0.0.1:9311"
    #: aggregation interval: timings are summarised and shipped this often (exceptions too, with exception_flush 0)
    interval: Duration = 10.0
    #: exceptions' fast lane: new exception occurrences leave at most this often (and at once after a quiet
    #: spell), one event per group with the exact count, so alerts see them within seconds; 0 = with `interval`
    exception_flush: Duration = 1.0
    #: default `service` when a client names none
    service: str = ""
    #: business module rules: module name → url_prefixes / packages / loggers / files / services
    module_rules: dict[str, ModuleRule] = field(default_factory=dict)
    #: largest request body, after decompression (413 beyond)
    max_body: ByteSize = 16 * 1024 * 1024
    #: most events in one /v1/events request
    max_events_per_request: int = 50_000
    #: distinct (kind, service, module, endpoint | fingerprint) series per interval; more are dropped and counted
    max_series: int = 5000
    #: distinct exception groups per flush (every exception_flush, else interval); more are dropped and counted
    max_exception_groups: int = 1000
    #: slowest samples kept per series and interval (statements redacted)
    slowest_samples: int = 3
    #: OTLP log records at or above this severity number become exceptions (17 = ERROR)
    min_log_severity: int = 17
    #: accept connections from other hosts (not recommended: the endpoint has no authentication)
    allow_remote: bool = False

    def __post_init__(self) -> None:
        host, port = split_listen(self.listen)
        if not self.allow_remote and not _is_loopback(host):
            raise ConfigError("listen", f"{host!r} is not a loopback address; set allow_remote: true to listen on it")
        if self.interval <= 0:
            raise ConfigError("interval", "must be greater than 0")
        if self.exception_flush < 0:
            raise ConfigError("exception_flush", "must be 0 (off) or greater")
        for name in ("max_events_per_request", "max_series", "max_exception_groups"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be at least 1")
        if self.max_body < 1024:
            raise ConfigError("max_body", "must be at least 1KiB")
        if not 0 <= self.slowest_samples <= 100:
            raise ConfigError("slowest_samples", "must be between 0 and 100")


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError("listen", f"expected host:port such as 127.0.0.1:9311, got {listen!r}")
    return host, int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FieldError(ValueError):
    """Bad client input; `field` names it (answered as 400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TooLarge(ValueError):
    pass


# ---------------------------------------------------------------- the ingest core (no HTTP)


class Ingest:
    """Validates and routes application input into the aggregator; `flush()` gives readings."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.mapper = ModuleMapper(config.module_rules)
        self.agg = Aggregator(max_series=config.max_series, max_groups=config.max_exception_groups,
                              slowest=config.slowest_samples)
        self.requests = 0
        self.rejected = 0
        #: called (on the loop thread) after an exception was aggregated: the fast lane's trigger
        self.on_exception: Callable[[], None] | None = None

    # ---- shared sinks

    def timing(self, kind: str, duration: float, *, service: str = "", module: str = "", endpoint: str = "",
               statement: str = "", db: str = "", error: bool = False, ts: float | None = None, path: str = "",
               attrs: dict[str, Any] | None = None) -> bool:
        service = service or self.config.service
        if not module and self.mapper:
            module = self.mapper.for_path(path) if path else None
            module = module or self.mapper.resolve(endpoint=endpoint, service=service)
            if not module and attrs and attrs.get("code.namespace"):
                module = self.mapper.for_package(str(attrs["code.namespace"])) or ""
        return self.agg.add_timing(kind, duration, service=service, module=module or "", endpoint=endpoint,
                                   statement=statement, db=db, error=error, ts=ts)

    def exception(self, exc_type: str, message: str, *, frames: list[dict[str, Any]] | None = None, stack: str = "",
                  count: int = 1, service: str = "", module: str = "", endpoint: str = "", logger: str = "",
                  ts: float | None = None, tags: dict[str, str] | None = None, source: str = "", attrs: Any = None) -> bool:
        if not frames and stack:
            p = parse_stack(stack)
            if p is not None:
                frames = p.frames
        service = service or self.config.service
        if not module:
            module = self.mapper.resolve(endpoint=endpoint, frames=frames or [], logger=logger, service=service)
        ok = self.agg.add_exception(exc_type, message, frames=frames or [], stack=stack, count=count, service=service,
                                    module=module, endpoint=endpoint, logger=logger, ts=ts, tags=tags, source=source)
        if ok and self.on_exception is not None:
            self.on_exception()
        return ok

    # ---- /v1/events

    def events(self, doc: Any) -> tuple[int, int]:
        """Validate the whole document first (400 names the field, nothing kept), then aggregate."""
        svc, evs = self.check_doc(doc)
        for i, e in enumerate(evs):
            _check_event(e, f"events[{i}]")
        return self.apply(svc, evs)

    async def events_async(self, doc: Any, chunk: int = 2000) -> tuple[int, int]:
        """`events` in chunks, yielding to the event loop in between so a huge request never stalls the agent."""
        svc, evs = self.check_doc(doc)
        for start in range(0, len(evs), chunk):
            for i in range(start, min(start + chunk, len(evs))):
                _check_event(evs[i], f"events[{i}]")
            if len(evs) > chunk:
                await asyncio.sleep(0)
        ok = dropped = 0
        for start in range(0, len(evs), chunk):
            o, d = self.apply(svc, evs[start:start + chunk])
            ok += o
            dropped += d
            if len(evs) > chunk:
                await asyncio.sleep(0)
        return ok, dropped

    def check_doc(self, doc: Any) -> tuple[str, list[Any]]:
        if not isinstance(doc, dict):
            raise FieldError("body", "must be a JSON object with an `events` array")
        extra = set(doc) - {"service", "events"}
        if extra:
            raise FieldError(sorted(extra)[0], "unknown field (expected service, events)")
        service = doc.get("service")
        if service is not None and (not isinstance(service, str) or len(service) > 200):
            raise FieldError("service", "must be a string of at most 200 characters")
        evs = doc.get("events")
        if not isinstance(evs, list):
            raise FieldError("events", "is required and must be an array")
        if len(evs) > self.config.max_events_per_request:
            raise FieldError("events", f"too many events in one request ({len(evs)} > {self.config.max_events_per_request})")
        return service or "", evs

    def apply(self, svc: str, checked: list[dict[str, Any]]) -> tuple[int, int]:
        """Aggregate already validated events; (accepted, dropped) counting exception `count`s."""
        ok = dropped = 0
        for e in checked:
            t = e["type"]
            if t == "exception":
                x = e["exception"]
                r = self.exception(x["type"], x.get("message") or "", frames=x.get("frames"), stack=x.get("stack") or "",
                                   count=e.get("count", 1), service=svc, module=e.get("module") or "",
                                   endpoint=e.get("endpoint") or "", logger=e.get("logger") or "", ts=e.get("ts"),
                                   tags=e.get("tags"), source="sdk")
                n = e.get("count", 1)
            else:
                r = self.timing(t, e["duration"], service=svc, module=e.get("module") or "",
                                endpoint=e.get("endpoint") or "", statement=e.get("statement") or "", db=e.get("db") or "",
                                error=bool(e.get("error")) or (e.get("status") or 0) >= 500, ts=e.get("ts"))
                n = 1
            if r:
                ok += n
            else:
                dropped += n
        self.agg.count_accepted("events", ok)
        return ok, dropped

    def flush(self) -> list[Any]:
        return self.agg.flush()

    def flush_exceptions(self) -> list[Any]:
        return self.agg.flush_exceptions()


_STR_FIELDS = ("module", "endpoint", "method", "statement", "db", "logger")


def _check_event(e: Any, f: str) -> dict[str, Any]:
    if not isinstance(e, dict):
        raise FieldError(f, "must be an object")
    t = e.get("type")
    if t != "exception" and t not in KINDS:
        raise FieldError(f"{f}.type", "must be one of exception, request, sql, span")
    ts = e.get("ts")
    if ts is not None:
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not MIN_TS <= ts <= MAX_TS:
            raise FieldError(f"{f}.ts", "must be unix seconds (a number between 2000 and 2100)")
    for k in _STR_FIELDS:
        v = e.get(k)
        if v is not None and not isinstance(v, str):
            raise FieldError(f"{f}.{k}", "must be a string")
    for k in ("module", "endpoint", "db", "logger", "method"):
        v = e.get(k)
        if v is not None and len(v) > 256:
            raise FieldError(f"{f}.{k}", "longer than 256 characters")
    tags = e.get("tags")
    if tags is not None:
        if not isinstance(tags, dict) or len(tags) > 16:
            raise FieldError(f"{f}.tags", "must be an object of at most 16 string values")
        for k, v in tags.items():
            if not TAG_KEY_RE.match(k) or len(k) > 64 or not isinstance(v, str) or len(v) > 256:
                raise FieldError(f"{f}.tags.{k}", "tag keys match [a-z_][a-z0-9_]*, values are strings of at most 256 characters")
            if k in ("host", "module", "service"):
                raise FieldError(f"{f}.tags.{k}", f"`{k}` is reserved; use the event's own field")
    if "status" in e and e["status"] is not None and (isinstance(e["status"], bool) or not isinstance(e["status"], int)):
        raise FieldError(f"{f}.status", "must be an integer HTTP status")
    if "error" in e and e["error"] is not None and not isinstance(e["error"], bool):
        raise FieldError(f"{f}.error", "must be true or false")
    if t == "exception":
        x = e.get("exception")
        if not isinstance(x, dict):
            raise FieldError(f"{f}.exception", "is required for type exception and must be an object")
        if not isinstance(x.get("type"), str) or not x["type"]:
            raise FieldError(f"{f}.exception.type", "is required (a non-empty string)")
        for k in ("message", "stack"):
            if k in x and x[k] is not None and not isinstance(x[k], str):
                raise FieldError(f"{f}.exception.{k}", "must be a string")
        fr = x.get("frames")
        if fr is not None:
            if not isinstance(fr, list):
                raise FieldError(f"{f}.exception.frames", "must be an array of objects")
            for i, fm in enumerate(fr):
                if not isinstance(fm, dict):
                    raise FieldError(f"{f}.exception.frames[{i}]", "must be an object")
        c = e.get("count", 1)
        if isinstance(c, bool) or not isinstance(c, int) or c < 1 or c > 10**9:
            raise FieldError(f"{f}.count", "must be an integer between 1 and 1e9")
    else:
        d = e.get("duration")
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d) or d < 0 or d > 86400 * 7:
            raise FieldError(f"{f}.duration", f"is required for type {t}: seconds, a finite number >= 0")
        if t == "sql":
            st = e.get("statement")
            if not isinstance(st, str) or not st.strip():
                raise FieldError(f"{f}.statement", "is required for type sql (the SQL text)")
        elif not e.get("endpoint"):
            raise FieldError(f"{f}.endpoint", f"is required for type {t} (route template or span name)")
    return e


# ---------------------------------------------------------------- HTTP


def read_body(raw: bytes, encoding: str, limit: int) -> bytes:
    """Inflate gzip/deflate bodies with a hard size cap (413 beyond)."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        if len(raw) > limit:
            raise TooLarge(f"body larger than {limit} bytes")
        return raw
    if enc not in ("gzip", "x-gzip", "deflate"):
        raise FieldError("Content-Encoding", f"unsupported encoding {enc!r} (use gzip, deflate or none)")
    d = zlib.decompressobj(31 if "gzip" in enc else 15)
    try:
        out = d.decompress(raw, limit + 1)
    except zlib.error as e:
        raise FieldError("body", f"malformed {enc} data: {e}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise TooLarge(f"body larger than {limit} bytes after decompression")
    return out


def make_app(ing: Ingest) -> Any:
    from aiohttp import web

    limit = ing.config.max_body

    def err(status: int, message: str, field: str | None = None) -> Any:
        ing.rejected += 1
        body: dict[str, Any] = {"error": message}
        if field:
            body["field"] = field
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")

    async def body_of(request: Any) -> bytes:
        if request.content_length is not None and request.content_length > limit:
            raise TooLarge(f"body larger than {limit} bytes")
        raw = bytearray()
        async for chunk in request.content.iter_chunked(65536):
            raw += chunk
            if len(raw) > limit:
                raise TooLarge(f"body larger than {limit} bytes")
        return read_body(bytes(raw), request.headers.get("Content-Encoding", ""), limit)

    async def events(request: Any) -> Any:
        ing.requests += 1
        try:
            body = await body_of(request)
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as e:
                raise FieldError("body", f"malformed JSON: {e}") from None
            ok, dropped = await ing.events_async(doc)
        except TooLarge as e:
            return err(413, str(e))
        except FieldError as e:
            return err(400, e.message, e.field)
        return web.Response(status=202, body=orjson.dumps({"accepted": ok, "dropped": dropped}), content_type="application/json")

    def otlp_handler(what: str) -> Any:
        async def handle(request: Any) -> Any:
            ing.requests += 1
            ctype = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
            try:
                body = await body_of(request)
                if ctype in ("application/x-protobuf", "application/protobuf"):
                    doc = otlp.decode_protobuf(body, what)
                    proto = True
                elif ctype in ("application/json", ""):
                    try:
                        doc = orjson.loads(body)
                    except orjson.JSONDecodeError as e:
                        raise FieldError("body", f"malformed JSON: {e}") from None
                    proto = False
                else:
                    return err(415, f"unsupported Content-Type {ctype!r}: use application/json or application/x-protobuf")
                if what == "traces":
                    n = otlp.traces(doc, ing.timing, ing.exception)
                else:
                    n = otlp.logs(doc, ing.exception, ing.config.min_log_severity)
                ing.agg.count_accepted(f"otlp_{what}", n)
            except TooLarge as e:
                return err(413, str(e))
            except otlp.MissingProto as e:
                return err(415, str(e))
            except (FieldError, otlp.OtlpError) as e:
                return err(400, e.message, e.field)
            if proto:
                # an empty Export*ServiceResponse
                return web.Response(status=200, body=b"", content_type="application/x-protobuf")
            return web.Response(status=200, body=b"{}", content_type="application/json")

        return handle

    async def health(request: Any) -> Any:
        return web.json_response({"status": "ok", "requests": ing.requests, "rejected": ing.rejected,
                                  "pending_series": len(ing.agg)})

    # the raw body is capped by `limit`; the read loop above enforces it without aiohttp's own 413 text
    app = web.Application(client_max_size=limit + 1)
    app.router.add_post("/v1/events", events)
    app.router.add_post("/v1/traces", otlp_handler("traces"))
    app.router.add_post("/v1/logs", otlp_handler("logs"))
    app.router.add_get("/health", health)
    return app


async def serve(config: Config, agent: Any, stop: asyncio.Event, *, ready: asyncio.Future[Any] | None = None,
                ingest: Ingest | None = None) -> None:
    """Serve on `config.listen` until `stop`; every `interval` hand the aggregated readings to `agent.submit`.

    `ready` (optional) receives the bound (host, port); `ingest` lets a caller keep a handle on the core.
    """
    from aiohttp import web

    ing = ingest or Ingest(config)
    app = make_app(ing)
    runner = web.AppRunner(app, access_log=None, auto_decompress=False, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    host, port = split_listen(config.listen)
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        log.error("local ingest cannot listen", extra={"listen": config.listen, "error": str(e)})
        if ready is not None and not ready.done():
            ready.set_exception(e)
        return
    bound = runner.addresses[0] if runner.addresses else (host, port)
    log.info("local ingest listening", extra={"listen": f"{bound[0]}:{bound[1]}"})
    if ready is not None and not ready.done():
        ready.set_result(bound)

    def ship(flush: Callable[[], list[Any]] = ing.flush) -> None:
        try:
            readings = flush()
            if readings:
                # exception events make the agent ship within a fraction of a second (Agent.submit: urgent)
                agent.submit(readings, source="local_ingest")
        except Exception as e:  # noqa: BLE001 - the agent must survive any bug here
            log.error("local ingest flush failed", extra={"error": f"{type(e).__name__}: {e}"})

    # The fast lane: the first exception after a quiet spell leaves after EXC_HOLD (batching what comes
    # with it); later ones at most every `exception_flush`, so a storm is one event per group per period.
    fast = config.exception_flush
    wake = asyncio.Event()
    exc_due: float | None = None
    last_exc = -math.inf

    def on_exception() -> None:
        nonlocal exc_due
        if exc_due is None:
            exc_due = max(time.monotonic() + min(EXC_HOLD, fast), last_exc + fast)
            wake.set()

    if fast > 0:
        ing.on_exception = on_exception
    stop_waiter = asyncio.create_task(stop.wait(), name="local-ingest-stop")
    stop_waiter.add_done_callback(lambda _t: wake.set())
    try:
        next_at = time.monotonic() + config.interval
        while not stop.is_set():
            due = next_at if exc_due is None else min(next_at, exc_due)
            wake.clear()
            try:
                async with asyncio.timeout(max(due - time.monotonic(), 0.0)):
                    await wake.wait()
            except TimeoutError:
                pass
            now = time.monotonic()
            if now >= next_at or stop.is_set():
                ship()
                next_at = now + config.interval
                if exc_due is not None:
                    exc_due, last_exc = None, now
            elif exc_due is not None and now >= exc_due:
                ship(ing.flush_exceptions)
                exc_due, last_exc = None, now
    finally:
        try:
            async with asyncio.timeout(3.0):
                await runner.cleanup()  # stop accepting, let in-flight requests finish
        except TimeoutError:
            log.warning("local ingest: requests still running at shutdown were cut off")
        finally:
            stop_waiter.cancel()
            ing.on_exception = None
            ship()  # always hand over what was aggregated, even when cancelled
