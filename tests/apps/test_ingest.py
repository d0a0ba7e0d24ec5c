"""Local ingest (POST /v1/events) → aggregation → collector extension → query API, with real servers on loopback."""

from __future__ import annotations

import gzip
import json
import random
from typing import Any

import pytest

from agent.ingest import Config
from checks.config import ConfigError, from_dict
from checks.sketch import DEFAULT_ALPHA
from tests.apps.helpers import CollectorExt, IngestServer, LoopThread, http_get, http_post


def _post(srv: IngestServer, doc: Any, **hdr: str) -> tuple[int, Any]:
    return http_post(srv.url + "/v1/events", json.dumps(doc).encode(), hdr)


def _exc(etype: str, msg: str, func: str, module: str | None = None, line: int = 10, count: int = 1, endpoint: str = "") -> dict[str, Any]:
    ev: dict[str, Any] = {
        "type": "exception", "count": count,
        "exception": {"type": etype, "message": msg,
                      "frames": [{"file": "/srv/shop/web.py", "line": 5, "function": "dispatch", "module": "shop.web", "in_app": True},
                                 {"file": f"/srv/shop/{func}.py", "line": line, "function": func, "module": f"shop.{func}", "in_app": True}],
                      "stack": f"Traceback (most recent call last):\n  File \"/srv/shop/{func}.py\", line {line}, in {func}\n{etype}: {msg}"},
    }
    if module:
        ev["module"] = module
    if endpoint:
        ev["endpoint"] = endpoint
    return ev


def test_same_bug_two_hosts_one_group_two_bugs_two_groups(loop_thread: LoopThread, collector: CollectorExt) -> None:
    a = IngestServer(loop_thread, "host-a")
    b = IngestServer(loop_thread, "host-b")
    try:
        # same bug: message differs only by ids/amounts, line numbers differ (an edit elsewhere in the file)
        assert _post(a, {"service": "shop", "events": [_exc("CardDeclined", "card 4111 declined for order 42", "charge", "payment", line=10, count=3)]})[0] == 202
        assert _post(b, {"service": "shop", "events": [_exc("CardDeclined", "card 5500 declined for order 77", "charge", "payment", line=12, count=2)]})[0] == 202
        # a different bug in the order module
        assert _post(a, {"service": "shop", "events": [_exc("KeyError", "'sku'", "create_order", "order", endpoint="POST /orders")]})[0] == 202
        collector.ingest(a.flush())
        collector.ingest(b.flush())
    finally:
        a.close()
        b.close()
    st, body = collector.get("/api/v1/exceptions?window=1h")
    assert st == 200
    groups = {g["type"]: g for g in body["groups"]}
    assert set(groups) == {"CardDeclined", "KeyError"}
    pay = groups["CardDeclined"]
    assert pay["module"] == "payment" and pay["count"] == 5 and pay["window_count"] == 5
    assert sorted(pay["hosts"]) == ["host-a", "host-b"]
    assert groups["KeyError"]["module"] == "order" and groups["KeyError"]["endpoint"] == "POST /orders"
    # sorted by count in the window, filters by module and host
    assert [g["type"] for g in body["groups"]] == ["CardDeclined", "KeyError"]
    st, body = collector.get("/api/v1/exceptions?module=order")
    assert [g["type"] for g in body["groups"]] == ["KeyError"]
    st, body = collector.get("/api/v1/exceptions?host=host-b")
    assert [(g["type"], g["window_count"]) for g in body["groups"]] == [("CardDeclined", 2)]
    # detail: stack, frames, hosts, histogram
    st, d = collector.get(f"/api/v1/exceptions/{pay['id']}?window=1h")
    assert st == 200
    assert "CardDeclined" in d["sample_stack"] and d["sample_frames"][-1]["function"] == "charge"
    assert {h["host"]: h["count"] for h in d["hosts"]} == {"host-a": 3, "host-b": 2}
    assert sum(p[1] for p in d["histogram"]["points"]) == 5
    assert collector.get("/api/v1/exceptions/999999")[0] == 404
    assert collector.get("/api/v1/exceptions/abc")[0] == 400
    # app.exceptions.count per module for alerting / Zabbix
    per_mod: dict[str, float] = {}
    for s in collector.emitted:
        assert s.name == "app.exceptions.count"
        per_mod[s.tags["module"]] = per_mod.get(s.tags["module"], 0) + s.value
    assert per_mod == {"payment": 5, "order": 1}


def test_timings_p95_within_sketch_error_and_sql_fingerprints(ingest: IngestServer, collector: CollectorExt) -> None:
    rng = random.Random(7)
    durs = [rng.lognormvariate(-4, 0.8) for _ in range(2000)]
    evs = [{"type": "request", "duration": d, "endpoint": "GET /orders/{id}", "status": 500 if i % 50 == 0 else 200}
           for i, d in enumerate(durs)]
    evs += [{"type": "sql", "duration": 0.001 * (i + 1), "statement": f"SELECT * FROM orders WHERE id = {i} AND note = 'secret-{i}'",
             "db": "postgresql", "module": "order"} for i in range(100)]
    for i in range(0, len(evs), 700):
        st, body = _post(ingest, {"service": "shop", "events": evs[i:i + 700]})
        assert st == 202 and body["dropped"] == 0
    batch = ingest.flush()
    collector.ingest(batch)
    # the agent's own per-interval samples
    from checks.catalogue import all_metrics

    catalogue = all_metrics()
    assert {s.name for s in batch.samples} <= set(catalogue)  # every emitted metric is documented
    assert catalogue["app.exceptions.count"].tags == ("module", "service")
    p95s = [s for s in batch.samples if s.name == "app.request.duration_p95_seconds"]
    assert len(p95s) == 1 and p95s[0].tags["module"] == "order" and p95s[0].tags["endpoint"] == "GET /orders/{id}"
    st, body = collector.get("/api/v1/perf/endpoints?window=1h")
    assert st == 200
    (item,) = body["items"]
    true_p95 = sorted(durs)[int(0.95 * (len(durs) - 1))]
    assert abs(item["p95_seconds"] - true_p95) <= DEFAULT_ALPHA * true_p95 * 1.001
    assert item["count"] == 2000 and item["errors"] == 40 and item["error_rate"] == pytest.approx(0.02)
    assert item["module"] == "order"  # from the URL prefix rule
    st, body = collector.get("/api/v1/performance/sql?sort=total")
    (sql,) = body["items"]  # literal-only differences: one fingerprint
    assert sql["count"] == 100 and sql["db"] == "postgresql"
    assert sql["statement"] == "select * from orders where id = ? and note = ?"
    text = json.dumps(body) + json.dumps([e.to_json() for e in batch.events])
    assert "secret-" not in text  # literals never leave the agent in clear
    assert sql["slowest"][0]["duration"] == pytest.approx(0.1)
    assert collector.get("/api/v1/perf/sql?sort=bogus")[0] == 400
    assert collector.get("/api/v1/perf/endpoints?window=xyz")[0] == 400


def test_exception_storm_counted_exactly_one_stack(ingest: IngestServer, collector: CollectorExt) -> None:
    ev = _exc("TimeoutError", "gateway timeout after 30s", "charge", "payment")
    for _ in range(20):
        st, body = _post(ingest, {"events": [ev] * 5_000})
        assert st == 202 and body["accepted"] == 5_000
    assert len(ingest.ingest.agg) == 1  # one group held in memory, not 100,000
    batch = ingest.flush()
    excs = [e for e in batch.events if e.kind == "app.exception"]
    assert len(excs) == 1 and excs[0].data["count"] == 100_000
    collector.ingest(batch)
    (g,) = collector.get("/api/v1/exceptions")[1]["groups"]
    assert g["count"] == 100_000
    occ = collector.conn.execute("SELECT COUNT(*) FROM app_exc_occurrences").fetchone()[0]
    assert occ == 1


def test_gzip_and_module_rules_from_frames_and_logger(ingest: IngestServer) -> None:
    doc = {"events": [
        {"type": "exception", "exception": {"type": "ValueError", "message": "x",
                                            "frames": [{"file": "/app/shop/payment/api.py", "function": "pay", "module": "shop.payment.api"}]}},
        {"type": "exception", "logger": "shop.payment.refunds", "exception": {"type": "OSError", "message": "disk"}},
        {"type": "request", "duration": 0.01, "endpoint": "POST /pay/{id}"},
    ]}
    raw = gzip.compress(json.dumps(doc).encode())
    st, body = http_post(ingest.url + "/v1/events", raw, {"Content-Encoding": "gzip"})
    assert (st, body) == (202, {"accepted": 3, "dropped": 0})
    batch = ingest.flush()
    mods = {e.data["type"]: e.tags["module"] for e in batch.events if e.kind == "app.exception"}
    assert mods == {"ValueError": "payment", "OSError": "payment"}
    assert all(e.tags["host"] == "host-a" for e in batch.events)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b"[1,2]", "body"),
        (b'{"events": 3}', "events"),
        (b'{"events": [], "bogus": 1}', "bogus"),
        (b'{"events": [{"type": "sql", "duration": 1}]}', "events[0].statement"),
        (b'{"events": [{"type": "request", "duration": "fast", "endpoint": "/"}]}', "events[0].duration"),
        (b'{"events": [{"type": "request", "duration": -1, "endpoint": "/"}]}', "events[0].duration"),
        (b'{"events": [{"type": "request", "duration": 1}]}', "events[0].endpoint"),
        (b'{"events": [{"type": "teleport"}]}', "events[0].type"),
        (b'{"events": [{"type": "exception", "exception": {}}]}', "events[0].exception.type"),
        (b'{"events": [{"type": "exception", "count": 0, "exception": {"type": "E"}}]}', "events[0].count"),
        (b'{"events": [{"type": "exception", "ts": 12, "exception": {"type": "E"}}]}', "events[0].ts"),
        (b'{"events": [{"type": "exception", "tags": {"Bad Key": "x"}, "exception": {"type": "E"}}]}', "events[0].tags.Bad Key"),
        (b'{"events": [{"type": "request", "duration": 0.1, "endpoint": "/", "module": 5}]}', "events[0].module"),
    ],
)
def test_bad_input_400_names_the_field_and_keeps_nothing(ingest: IngestServer, body: bytes, field: str) -> None:
    good = b'{"type": "request", "duration": 0.1, "endpoint": "GET /ok"}'
    if body.startswith(b'{"events": [{'):
        body = body.replace(b'{"events": [', b'{"events": [' + good + b", ", 1)
        field = field.replace("events[0]", "events[1]")
    st, resp = http_post(ingest.url + "/v1/events", body)
    assert st == 400, resp
    assert resp["field"] == field and resp["error"]
    assert len(ingest.ingest.agg) == 0  # the valid event before the bad one was not kept
    # the server is still fine
    assert _post(ingest, {"events": [json.loads(good)]})[0] == 202


def test_huge_bodies_413_and_bad_encodings(loop_thread: LoopThread) -> None:
    srv = IngestServer(loop_thread, max_body="64KiB")
    try:
        big = json.dumps({"events": [{"type": "request", "duration": 0.1, "endpoint": "x" * 200}] * 2000}).encode()
        assert http_post(srv.url + "/v1/events", big)[0] == 413
        assert http_post(srv.url + "/v1/events", gzip.compress(big), {"Content-Encoding": "gzip"})[0] == 413  # bomb
        st, body = http_post(srv.url + "/v1/events", b"\x00garbage", {"Content-Encoding": "gzip"})
        assert st == 400 and body["field"] == "body"
        st, body = http_post(srv.url + "/v1/events", b"{}", {"Content-Encoding": "br"})
        assert st == 400 and body["field"] == "Content-Encoding"
        assert http_get(srv.url + "/health")[0] == 200
    finally:
        srv.close()


def test_limits_drop_and_count_new_series(loop_thread: LoopThread) -> None:
    srv = IngestServer(loop_thread, max_series=5)
    try:
        st, body = _post(srv, {"events": [{"type": "request", "duration": 0.1, "endpoint": f"GET /e{i}"} for i in range(8)]})
        assert (st, body) == (202, {"accepted": 5, "dropped": 3})
        batch = srv.flush()
        dropped = [s for s in batch.samples if s.name == "app.ingest.dropped_total"]
        assert dropped and dropped[0].value == 3 and dropped[0].tags["reason"] == "too_many_series"
    finally:
        srv.close()


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"listen": "0.0.0.0:9311"}, "local_ingest.listen"),
        ({"listen": "nonsense"}, "local_ingest.listen"),
        ({"interval": "soon"}, "local_ingest.interval"),
        ({"module_rules": {"payment": {"prefixes": ["/pay"]}}}, "local_ingest.module_rules.payment.prefixes"),
        ({"max_series": 0}, "local_ingest.max_series"),
        ({"bogus": 1}, "local_ingest.bogus"),
    ],
)
def test_config_errors_name_the_key(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as ei:
        from_dict(Config, raw, "local_ingest")
    assert ei.value.path == path


def test_agent_config_accepts_local_ingest_section() -> None:
    from agent.config import parse_agent_config

    cfg = parse_agent_config({"state_dir": "/tmp/x", "local_ingest": {"listen": "127.0.0.1:9400", "module_rules": {"payment": {"url_prefixes": ["/pay"]}}}})
    assert isinstance(cfg.local_ingest, Config) and cfg.local_ingest.listen == "127.0.0.1:9400"
    assert from_dict(Config, {"listen": "10.0.0.1:9311", "allow_remote": True}).allow_remote


def test_stop_hands_over_what_was_aggregated(loop_thread: LoopThread) -> None:
    srv = IngestServer(loop_thread, "host-z")
    assert _post(srv, {"events": [{"type": "request", "duration": 0.2, "endpoint": "GET /x"}]})[0] == 202
    srv.close()  # no interval has passed: the final flush ships it
    names = {getattr(r, "name", None) or r.kind for r in srv.agent.readings}
    assert {"app.request.count", "app.perf"} <= names
