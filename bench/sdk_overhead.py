"""SDK overhead per instrumented WSGI request and per SQL call (µs): infrawatch_sdk vs uninstrumented vs OpenTelemetry.

Same process, same run, same app and statements:
- request: a small WSGI app called directly with a WSGI environ (no network), bare / wrapped in
  infrawatch_sdk.WSGIMiddleware / wrapped in opentelemetry-instrumentation-wsgi's OpenTelemetryMiddleware;
- SQL: sqlite3 in memory, `cursor.execute` bare / through infrawatch_sdk.wrap_dbapi / through
  opentelemetry-instrumentation-dbapi's instrument_connection; parameterised statements and statements
  with inline literals (every one distinct: the SDK's redaction cache never hits).

Both instrumentations do their background work in this process and are flushed inside the timed
region (SDK: client.flush; OTel: TracerProvider.force_flush with a BatchSpanProcessor and a no-op
exporter), so "total" includes queueing, redaction, JSON+gzip and the HTTP POST to a receiver that
runs in a child process (its own CPU is not counted). "inline" is the same loop without waiting for
the background work. Queues are sized so nothing is dropped in either.

    python bench/sdk_overhead.py [--n 20000] [--rounds 7]

Needs: opentelemetry-sdk, opentelemetry-instrumentation-wsgi, opentelemetry-instrumentation-dbapi.
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import infrawatch_sdk as iw  # noqa: E402

RECEIVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(202); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def start_receiver() -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    port = int(p.stdout.readline())
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    return p, f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------- the app

def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = b'{"order": 42, "status": "paid"}'
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def make_environ() -> dict[str, Any]:
    import io
    from wsgiref.util import setup_testing_defaults

    env: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/orders/42", "QUERY_STRING": "",
                           "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1:8000",
                           "wsgi.input": io.BytesIO(b"")}
    setup_testing_defaults(env)
    return env


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
    return lambda b: None


def run_requests(app: Callable[..., Any], env: dict[str, Any], n: int) -> None:
    for _ in range(n):
        r = app(env.copy(), start_response)
        for _chunk in r:
            pass
        close = getattr(r, "close", None)
        if close is not None:
            close()


# ---------------------------------------------------------------- OpenTelemetry

def otel_provider(n: int) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class NoopExporter(SpanExporter):
        def __init__(self) -> None:
            self.spans = 0

        def export(self, spans: Any) -> SpanExportResult:
            self.spans += len(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    exp = NoopExporter()
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(exp, max_queue_size=n + 10, max_export_batch_size=512))
    tp.exporter = exp  # type: ignore[attr-defined]
    return tp


# ---------------------------------------------------------------- timing

def timed(fn: Callable[[], None], after: Callable[[], Any] | None = None) -> tuple[float, float]:
    """(inline seconds, total seconds including `after`)."""
    t0 = time.perf_counter()
    fn()
    t1 = time.perf_counter()
    if after is not None:
        after()
    return t1 - t0, time.perf_counter() - t0


def bench(label: str, n: int, rounds: int, variants: dict[str, tuple[Callable[[], None], Callable[[], Any] | None]]) -> dict[str, dict[str, float]]:
    res: dict[str, dict[str, list[float]]] = {k: {"inline": [], "total": []} for k in variants}
    for _ in range(rounds):
        for name, (fn, after) in variants.items():  # interleaved, so drift hits every variant alike
            inline, total = timed(fn, after)
            res[name]["inline"].append(inline / n * 1e6)
            res[name]["total"].append(total / n * 1e6)
    # best of the rounds (as timeit does): the least disturbed by other load on the machine
    med = {k: {m: min(v) for m, v in d.items()} for k, d in res.items()}
    spread = {k: statistics.median(d["total"]) for k, d in res.items()}
    base = med["bare"]["total"]
    print(f"\n{label}: {n} calls x {rounds} rounds, best round, µs per call (median round in brackets)")
    print(f"  {'variant':<14}{'per call':>10}{'overhead':>11}{'overhead (inline)':>19}")
    for k, d in med.items():
        print(f"  {k:<14}{d['total']:>10.2f}{d['total'] - base:>11.2f}{d['inline'] - med['bare']['inline']:>19.2f}"
              f"   [{spread[k]:.2f}]")
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    n = a.n

    from opentelemetry.instrumentation.dbapi import instrument_connection
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    recv, url = start_receiver()
    try:
        client = iw.init(url, service="bench", queue_size=n * 4, flush_interval=0.2,
                         modules={"order": {"url_prefixes": ["/orders"]}})
        env = make_environ()
        tp = otel_provider(n * 4)
        iw_app = iw.WSGIMiddleware(wsgi_app)
        otel_app = OpenTelemetryMiddleware(wsgi_app, tracer_provider=tp)
        flush_iw = lambda: client.flush(60)  # noqa: E731
        flush_otel = lambda: tp.force_flush(60_000)  # noqa: E731
        req = bench("WSGI request (direct call, no network)", n, a.rounds, {
            "bare": (lambda: run_requests(wsgi_app, env, n), None),
            "infrawatch": (lambda: run_requests(iw_app, env, n), flush_iw),
            "opentelemetry": (lambda: run_requests(otel_app, env, n), flush_otel),
        })

        def conn() -> sqlite3.Connection:
            c = sqlite3.connect(":memory:", check_same_thread=False)
            c.execute("create table orders (id integer primary key, owner text, total real)")
            c.executemany("insert into orders values (?, ?, ?)", [(i, f"o{i}", i * 1.5) for i in range(1000)])
            return c

        bare_cur = conn().cursor()
        iw_cur = iw.wrap_dbapi(conn(), db="sqlite").cursor()
        otel_cur = instrument_connection("bench", conn(), "sqlite", tracer_provider=tp).cursor()

        def params(cur: Any) -> Callable[[], None]:
            def run() -> None:
                for i in range(n):
                    cur.execute("select owner, total from orders where id = ?", (i % 1000,))
                    cur.fetchall()
            return run

        counter = [0]

        def literals(cur: Any) -> Callable[[], None]:
            def run() -> None:
                base = counter[0]
                counter[0] += n
                for i in range(base, base + n):  # every statement distinct: no cache helps anyone
                    cur.execute(f"select owner, total from orders where id = {i % 1000} and owner <> 'x{i}'")
                    cur.fetchall()
            return run

        sql_p = bench("SQL call, parameterised (sqlite3 cursor.execute + fetchall)", n, a.rounds, {
            "bare": (params(bare_cur), None),
            "infrawatch": (params(iw_cur), flush_iw),
            "opentelemetry": (params(otel_cur), flush_otel),
        })
        sql_l = bench("SQL call, inline literals, all distinct (redacted by the SDK)", n, a.rounds, {
            "bare": (literals(bare_cur), None),
            "infrawatch": (literals(iw_cur), flush_iw),
            "opentelemetry": (literals(otel_cur), flush_otel),
        })
        st = client.stats()
        print(f"\nSDK: sent {st['sent']} events, dropped {st['dropped']}; OTel exported {tp.exporter.spans} spans")
        ok = True
        for label, m in (("request", req), ("sql (params)", sql_p), ("sql (literals)", sql_l)):
            ovh_iw = m["infrawatch"]["total"] - m["bare"]["total"]
            ovh_ot = m["opentelemetry"]["total"] - m["bare"]["total"]
            goal = ovh_iw < ovh_ot and (not label.startswith("sql") or ovh_iw < 20)
            ok &= goal
            print(f"GOAL {label:<15} infrawatch {ovh_iw:6.2f} µs vs OpenTelemetry {ovh_ot:6.2f} µs"
                  f"{' (< 20 µs)' if label.startswith('sql') else ''}: {'met' if goal else 'MISSED'}")
        client.close(1)
        tp.shutdown()
        sys.exit(0 if ok else 1)
    finally:
        recv.terminate()
        recv.wait(5)


if __name__ == "__main__":
    main()
