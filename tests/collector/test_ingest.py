"""Ingest over real HTTP into a real SQLite store: exact points, dedupe, bad input, auth, restart."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from checks.model import Batch, Event, Sample
from tests.collector.conftest import AGENT_TOKEN, OTHER_TOKEN, READ_TOKEN, StartFn, base_config, make_batch, stop


async def test_ingest_dedupe_and_query_exact_points(start_collector: StartFn) -> None:
    c = await start_collector()
    b = make_batch("web1", 20, tags={"cpu": "total"})
    assert await c.post(b) == (200, {"status": "stored", "batch_id": b.batch_id, "samples": 20, "events": 0})
    st, body = await c.post(b)
    assert (st, body["status"]) == (200, "duplicate")
    st, res = await c.get("/api/v1/query", metric="test.value", host="web1", tag__cpu="total", start="-1h", end="now")
    assert st == 200 and res["resolution"] == "raw"
    assert len(res["series"]) == 1
    s = res["series"][0]
    assert s["metric"] == "test.value" and s["host"] == "web1" and s["tags"] == {"host": "web1", "cpu": "total"}
    assert s["points"] == [[round(x.ts, 3), x.value] for x in b.samples] or [p[1] for p in s["points"]] == [x.value for x in b.samples]
    assert [abs(p[0] - x.ts) < 0.001 for p, x in zip(s["points"], b.samples)] == [True] * 20
    # the same batch posted uncompressed is still a duplicate; nothing stored twice
    st, body = await c.post(b, gz=False)
    assert body["status"] == "duplicate"
    st, res = await c.get("/api/v1/query", metric="test.value", start="-1h", agg="count", step="3600")
    assert sum(p[1] for p in res["series"][0]["points"]) == 20


async def test_series_hosts_events(start_collector: StartFn) -> None:
    c = await start_collector()
    now = time.time()
    b = Batch("batch-events-1", "web1", now, [Sample("a.b", 1.0, now, {"host": "web1", "mountpoint": "/"}),
                                               Sample("a.b", 2.0, now, {"host": "web1", "mountpoint": "/var"})],
              [Event("check.error", now - 1, "boom", {"host": "web1", "check": "x"}, {"error": "timeout"}),
               Event("probe.failure", now, "down", {"host": "web1"}, {"target": "t"})])
    assert (await c.post(b))[0] == 200
    assert (await c.post(make_batch("db1", 3), token=OTHER_TOKEN))[0] == 200
    st, res = await c.get("/api/v1/series", metric="a.b", tag__mountpoint="/var")
    assert res == {"series": [{"metric": "a.b", "host": "web1", "tags": {"host": "web1", "mountpoint": "/var"}}]}
    st, res = await c.get("/api/v1/series", host="db1")
    assert [s["metric"] for s in res["series"]] == ["test.value"]
    st, res = await c.get("/api/v1/hosts")
    hosts = {h["host"]: h for h in res["hosts"]}
    assert set(hosts) == {"web1", "db1"} and all(h["status"] == "up" for h in hosts.values())
    assert hosts["web1"]["last_seen"] >= now - 5
    st, res = await c.get("/api/v1/events", start="-1h")
    assert [e["kind"] for e in res["events"]] == ["probe.failure", "check.error"]  # newest first
    st, res = await c.get("/api/v1/events", kind="check.error", host="web1")
    assert res["events"][0]["data"] == {"error": "timeout"} and res["events"][0]["message"] == "boom"
    st, res = await c.get("/api/v1/events", limit="x")
    assert st == 400 and res["param"] == "limit"


async def test_bad_input_is_refused_and_server_keeps_serving(start_collector: StartFn, tmp_path: Path) -> None:
    c = await start_collector(base_config(tmp_path, max_body_bytes="64KiB"))
    good = make_batch("web1", 5)
    # malformed JSON
    st, body = await c.post(b'{"batch_id": ', gz=False)
    assert st == 400 and "malformed JSON" in body["error"]
    # wrong schema: names the field
    raw = orjson.loads(good.to_json() and orjson.dumps(good.to_json()))
    raw["samples"][3]["value"] = "high"
    st, body = await c.post(orjson.dumps(raw))
    assert st == 400 and body["field"] == "samples[3].value" and "samples[3].value" in body["error"]
    raw = orjson.loads(orjson.dumps(good.to_json()))
    raw["samples"][0]["tags"]["Bad-Key"] = "x"
    st, body = await c.post(orjson.dumps(raw))
    assert st == 400 and body["field"].startswith("samples[0].tags")
    # huge body (compressed and uncompressed)
    huge = make_batch("web1", 5000)
    st, body = await c.post(huge, gz=False)
    assert st == 413 and "max_body_bytes" in body["error"]
    st, body = await c.post(huge)  # small when gzipped, too big once inflated
    assert st == 413
    # tokens
    assert (await c.post(good, token=None))[0] == 401
    assert (await c.post(good, token="wrong-token-xyz"))[0] == 401
    st, body = await c.post(good, token=OTHER_TOKEN)  # db1's token sending as web1
    assert st == 403 and body["field"] == "agent"
    # still serving, and nothing of the refused batches was stored
    st, h = await c.get("/healthz", token=None)
    assert st == 200 and h["status"] == "ok"
    assert (await c.post(good))[0] == 200
    st, res = await c.get("/api/v1/query", metric="test.value", start="-1h", agg="count", step="86400")
    assert sum(p[1] for p in res["series"][0]["points"]) == 5
    assert c.core.stats.rejected["too_large"] == 2 and c.core.stats.rejected["auth"] == 3


async def test_read_endpoints_need_a_token_except_up_mode_loopback(start_collector: StartFn, tmp_path: Path) -> None:
    c = await start_collector()
    assert (await c.get("/api/v1/hosts", token=None))[0] == 401
    assert (await c.get("/api/v1/hosts", token=AGENT_TOKEN))[0] == 403
    assert (await c.get("/api/v1/hosts", token=READ_TOKEN))[0] == 200
    up = await start_collector(base_config(tmp_path / "up"), up_mode=True)
    assert (await up.get("/api/v1/hosts", token=None))[0] == 200


async def test_query_parameters_are_checked(start_collector: StartFn) -> None:
    c = await start_collector()
    for params, bad in [({}, "metric"), ({"metric": "a", "agg": "median"}, "agg"), ({"metric": "a", "start": "yesterday"}, "start"),
                        ({"metric": "a", "step": "-5"}, "step"), ({"metric": "a", "resolution": "5m"}, "resolution"),
                        ({"metric": "a", "start": "-1h", "end": "-2h"}, "end"), ({"metric": "a", "tag.Bad": "x"}, "tag.Bad")]:
        st, body = await c.get("/api/v1/query", **params)
        assert st == 400 and body["param"] == bad, (params, body)


async def test_restart_keeps_data_and_dedupe(start_collector: StartFn, tmp_path: Path) -> None:
    cfg = base_config(tmp_path)
    c = await start_collector(cfg)
    b = make_batch("web1", 7)
    assert (await c.post(b))[0] == 200
    await stop(c)
    c2 = await start_collector(cfg)
    assert (await c2.post(b))[1]["status"] == "duplicate"
    st, res = await c2.get("/api/v1/query", metric="test.value", start="-1h")
    assert [p[1] for p in res["series"][0]["points"]] == [float(i) for i in range(7)]
    st, res = await c2.get("/api/v1/hosts")
    assert res["hosts"][0]["host"] == "web1"


async def test_overload_answers_503_with_retry_after(start_collector: StartFn, tmp_path: Path) -> None:
    c = await start_collector(base_config(tmp_path, store={"max_pending_samples": 1000}))
    w = c.core.store.writer
    # hold the writer: a job that blocks until released
    import threading

    gate = threading.Event()
    w.call(lambda conn: gate.wait(10))
    try:
        first = make_batch("web1", 900)
        import asyncio

        t = asyncio.ensure_future(c.post(first))
        for _ in range(200):
            if w.pending_samples >= 900:
                break
            await asyncio.sleep(0.01)
        async with c.session.post(f"{c.url}/api/v1/batches", data=orjson.dumps(make_batch("web1", 200).to_json()),
                                  headers={"Authorization": f"Bearer {AGENT_TOKEN}"}) as r:
            assert r.status == 503 and int(r.headers["Retry-After"]) >= 1
            assert "overloaded" in (await r.json())["error"]
    finally:
        gate.set()
    assert (await t)[0] == 200


async def test_self_metrics_and_agent_version(start_collector: StartFn, tmp_path: Path) -> None:
    import asyncio

    from checks.catalogue import all_metrics
    from collector.selfmetrics import collect

    c = await start_collector(base_config(tmp_path, self_metrics_interval=0.2, hostname="the-collector"))
    assert (await c.post(make_batch("web1", 3), headers={"User-Agent": "infrawatch-agent/1.2.3"}))[0] == 200
    names = {s.name for s in collect(c.core)}
    assert names <= set(all_metrics())
    for _ in range(200):
        st, res = await c.get("/api/v1/query", metric="collector.ingest.samples_total", start="-5m")
        if res["series"] and res["series"][0]["points"][-1][1] >= 3:
            break
        await asyncio.sleep(0.05)
    assert res["series"][0]["host"] == "the-collector"
    st, res = await c.get("/api/v1/hosts")
    web1 = next(h for h in res["hosts"] if h["host"] == "web1")
    assert web1["agent_version"] == "1.2.3"
