"""InfluxDB sink: config, line-protocol encoding, and writes read back from a real VictoriaMetrics."""

from __future__ import annotations

import asyncio
import gzip
import math
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from checks.config import ConfigError, from_dict, load_yaml_file
from checks.model import Batch, Sample
from collector.sinks import load_sink_class
from collector.sinks.base import SinkContext, SinkError
from collector.sinks.influxdb import InfluxDBSink, InfluxDBSinkConfig, parse_retry_after
from collector.sinks.lineproto import LineEncoder, Mapping, parse_line, to_timestamp
from tests.servers.net import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "sinks" / "influxdb.yaml"


def make_sink(url: str, metrics: list[tuple[str, float, dict[str, str]]] | None = None, **over: Any) -> InfluxDBSink:
    raw = {"url": url, "org": "test-org", "bucket": "test-bucket", "token": "t0ken", **over}
    ctx = SinkContext("/nonexistent", (lambda n, v, t=None: metrics.append((n, v, dict(t or {})))) if metrics is not None else None)
    return InfluxDBSink(from_dict(InfluxDBSinkConfig, raw), ctx)


def batch(samples: list[Sample], agent: str = "agent-1") -> Batch:
    return Batch(uuid.uuid4().hex, agent, time.time(), samples)


# ---------------------------------------------------------------------------------------- config


def test_registry_and_example_config_validate() -> None:
    assert load_sink_class("influxdb") is InfluxDBSink
    data, _ = load_yaml_file(EXAMPLE)
    assert isinstance(data, dict) and list(data) == ["sinks"]
    (raw_all,) = data["sinks"]
    runner_keys = ("queue_max_bytes", "backoff_initial", "backoff_max", "max_batches_per_send")  # the collector's runner
    raw = {k: v for k, v in raw_all.items() if k not in runner_keys}
    assert set(raw_all) - set(raw) == set(runner_keys), "document the runner options too"
    cfg = from_dict(InfluxDBSink.Config, raw, "sinks[0]")
    # the example documents the defaults: it must equal a config built from the required key alone
    assert cfg == from_dict(InfluxDBSink.Config, {"type": "influxdb", "url": raw["url"], "name": "influxdb"})
    assert cfg.precision == "ms" and cfg.gzip and cfg.mapping.mode == "split"
    text = EXAMPLE.read_text()
    lines = text.splitlines()
    for key in list(raw_all) + list(raw["mapping"]):  # every option is documented by a comment right above it
        (n,) = [i for i, line in enumerate(lines) if re.match(rf"^\s+(- )?{key}:", line)]
        assert lines[n - 1].strip().startswith("#"), f"option {key} has no comment"


@pytest.mark.parametrize(
    ("raw", "path", "words"),
    [
        ({"url": "127.0.0.1:8428"}, "", "http:// or https://"),
        ({"url": "http://x", "precision": "m"}, "precision", "'ms'"),
        ({"url": "http://x", "gzip_level": 0}, "", "gzip_level"),
        ({"url": "http://x", "batch_size": 0}, "", "batch_size"),
        ({"url": "http://x", "timeout": "fast"}, "timeout", "duration"),
        ({"url": "http://x", "mapping": {"mode": "split", "prefix": "x"}}, "mapping.prefix", "unknown key"),
        ({"url": "http://x", "mapping": {"measurement_prefix": "#x"}}, "mapping", "comment"),
        ({"url": "http://x", "org": ""}, "", "org"),
        ({"url": "http://x", "bogus": 1}, "bogus", "unknown key"),
        ({}, "url", "required"),
    ],
)
def test_config_errors_name_the_key(raw: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as ei:
        from_dict(InfluxDBSinkConfig, raw)
    assert ei.value.path == path
    assert words in ei.value.message


# ---------------------------------------------------------------------------------------- encoding


def test_mapping_names() -> None:
    m = Mapping()
    assert m.split("system.cpu.usage_percent") == ("system_cpu", "usage_percent")
    assert m.series_name("system.cpu.usage_percent") == "system_cpu_usage_percent"
    assert m.split("system.load.1m") == ("system_load", "1m")
    assert m.split("ping.up") == ("ping", "up")
    assert m.split("uptime") == ("uptime", "value")
    v = Mapping(mode="value", measurement_prefix="iw_")
    assert v.split("system.cpu.usage_percent") == ("iw_system_cpu_usage_percent", "value")


NASTY_TAGS = {
    "space": "a b  c",
    "comma": "a,b,",
    "equals": "k=v==",
    "quote": '"quoted" \'single\'',
    "unicode": "主机 – é ü 🚀",
    "backslash": "C:\\data\\",
    "escapes": "\\, \\= \\ ",
    "hash": "#not a comment",
    "mixed": 'x=1, y="2" \\z',
}


def test_escaping_roundtrips_through_the_spec_parser() -> None:
    enc = LineEncoder()
    odd_keys = {"k y": "1", "a,b": "2", "e=q": "3", "b\\s": "4"}
    s = Sample("app.sql.duration_seconds", 0.25, 1_700_000_000.5, {**NASTY_TAGS, **odd_keys, "empty": ""})
    (line,) = enc.lines([batch([s], agent="web 1,eu")])
    measurement, tags, fields, ts = parse_line(line)
    assert measurement == "app_sql"
    assert fields == {"duration_seconds": "0.25"}
    assert ts == 1_700_000_000_500
    assert tags == {**NASTY_TAGS, **odd_keys, "host": "web 1,eu"}  # empty tag dropped, host added
    assert list(tags) == sorted(tags)  # sorted keys, as InfluxDB recommends


def test_control_characters_cannot_break_a_line() -> None:
    enc = LineEncoder()
    s = Sample("a.b", 1.0, 1_700_000_000.0, {"t": "line1\nline2\r\tx"})
    (line,) = enc.lines([batch([s])])
    assert "\n" not in line and "\r" not in line and "\t" not in line
    assert parse_line(line)[1]["t"] == "line1\\nline2\\r\\tx"


def test_values_are_exact_and_non_finite_skipped() -> None:
    enc = LineEncoder()
    values = [0.1, -0.0, 1e300, -1.7976931348623157e308, 5e-324, 2.2250738585072014e-308, 1 / 3, 12345678901234567.0, 42.0, 7]
    samples = [Sample("x.v", v, 1_700_000_000.0 + i, {"i": str(i)}) for i, v in enumerate(values)]
    samples += [Sample("x.v", float("nan"), 1_700_000_100.0), Sample("x.v", float("inf"), 1_700_000_101.0)]
    from collector.sinks.lineproto import EncodeStats

    stats = EncodeStats()
    lines = enc.lines([batch(samples)], stats)
    assert stats.points == len(values) and stats.skipped == {"non_finite": 2}
    for v, line in zip(values, lines):
        raw = parse_line(line)[2]["v"]
        assert float(raw) == v and math.copysign(1, float(raw)) == math.copysign(1, v), (v, raw)
        assert not raw.endswith("i")  # always a float field: one field type per series in InfluxDB


@pytest.mark.parametrize(
    ("ts", "precision", "expected"),
    [
        (1_700_000_000.0, "ms", 1_700_000_000_000),
        (1_700_000_000.001, "ms", 1_700_000_000_001),  # 1700000000.001 * 1000 = 1700000000000.9998 → must round
        (1_700_000_000.0005, "ms", 1_700_000_000_000),  # float is 1700000000.000499964: below the half
        (1_700_000_000.9996, "ms", 1_700_000_001_000),  # rounds up across the second boundary
        (1_700_000_000.123, "s", 1_700_000_000),
        (1_700_000_000.5000002, "s", 1_700_000_001),
        (1_700_000_000.123456, "us", 1_700_000_000_123_456),
        (1_700_000_000.25, "ns", 1_700_000_000_250_000_000),
    ],
)
def test_timestamp_rounding(ts: float, precision: str, expected: int) -> None:
    assert to_timestamp(ts, precision) == expected
    enc = LineEncoder(precision=precision)
    assert parse_line(enc.lines([batch([Sample("a.b", 1.0, ts)])])[0])[3] == expected


def test_filters_and_extra_tags() -> None:
    enc = LineEncoder(Mapping(include=("system.*", "ping.*"), exclude=("system.disk.*",), extra_tags={"dc": "eu", "host": "x"}, host_tag="node"))
    b = batch(
        [
            Sample("system.cpu.usage_percent", 1.0, 1_700_000_000.0, {"dc": "us"}),
            Sample("system.disk.read_bytes_per_second", 1.0, 1_700_000_000.0),
            Sample("http.up", 1.0, 1_700_000_000.0),
            Sample("ping.up", 1.0, 1_700_000_000.0, {"node": "own"}),
        ],
        agent="a1",
    )
    lines = enc.lines([b])
    assert [parse_line(x)[:2] for x in lines] == [
        ("system_cpu", {"dc": "us", "host": "x", "node": "a1"}),
        ("ping", {"dc": "eu", "host": "x", "node": "own"}),
    ]


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    from email.utils import formatdate

    assert 25 < parse_retry_after(formatdate(time.time() + 30, usegmt=True)) <= 31  # type: ignore[operator]


# ---------------------------------------------------------------------------------------- real VictoriaMetrics


VM_VALUES = [0.0, 1.5, -2.25, 100.0, 1.25e-9, -123456.789, 987654321012.0, 1e300, -1e300, 12345.6789012]
# VictoriaMetrics stores a value as a decimal (int64 mantissa, 10^exponent) with 12 significant digits:
# full float64 precision is truncated there (pi → 3.141592653589), and 1e-30 comes back as
# 9.999999999999999e-31 (1 ulp) — its limits, not the sink's; the sink's own lines are exact (see above).
VM_PRECISE = [1 / 3, -2 / 3, math.pi, 12.345678901234567, 99.99999999999999, 1e-30, -7.5e-25]


async def test_written_points_read_back_exactly(victoriametrics: Any) -> None:
    vm = victoriametrics
    metrics: list[tuple[str, float, dict[str, str]]] = []
    sink = make_sink(vm.url, metrics)
    run = uuid.uuid4().hex[:8]
    t0 = round(time.time() - 120, 3)
    samples = []
    for i, (k, v) in enumerate(NASTY_TAGS.items()):
        samples.append(Sample("iwtest.tags.value", float(i), t0 + i * 0.001, {"run": run, "kind": k, "v": v}))
    for i, v in enumerate(VM_VALUES + VM_PRECISE):
        samples.append(Sample("iwtest.values.v", v, t0 + i, {"run": run, "i": str(i)}))
    samples.append(Sample("iwtest.values.v", 5.0, t0, {"run": run, "i": "host", "host": "explicit-host"}))
    await sink.start()
    try:
        await sink.send([batch(samples[:10], agent="agent one"), batch(samples[10:], agent="agent-2")])
    finally:
        await sink.close()
    vm.settle(f'{{run="{run}"}}', len(samples))  # every point of this run searchable

    tagged = vm.export(f'iwtest_tags_value{{run="{run}"}}')
    got = {s["metric"]["kind"]: s for s in tagged}
    assert set(got) == set(NASTY_TAGS)
    for i, (k, v) in enumerate(NASTY_TAGS.items()):
        s = got[k]
        assert s["metric"] == {"__name__": "iwtest_tags_value", "run": run, "kind": k, "v": v, "host": "agent one"}
        assert s["values"] == [float(i)]
        assert s["timestamps"] == [round((t0 + i * 0.001) * 1000)]

    exported = {s["metric"]["i"]: s for s in vm.export(f'iwtest_values_v{{run="{run}"}}')}
    assert exported.pop("host")["metric"]["host"] == "explicit-host"
    assert len(exported) == len(VM_VALUES) + len(VM_PRECISE)
    for i, v in enumerate(VM_VALUES + VM_PRECISE):
        s = exported[str(i)]
        assert s["timestamps"] == [round((t0 + i) * 1000)]
        assert s["metric"]["host"] == ("agent one" if i + len(NASTY_TAGS) < 10 else "agent-2")
        (got_v,) = s["values"]
        if v in VM_PRECISE:
            assert math.isclose(got_v, v, rel_tol=1e-11), (v, got_v)
        else:
            assert got_v == v, (v, got_v)
        # the query API answers the same value at that instant
        (q,) = vm.query(f'iwtest_values_v{{run="{run}",i="{i}"}}', at=t0 + i + 0.5)
        assert math.isclose(float(q["value"][1]), got_v, rel_tol=1e-15, abs_tol=0)
    assert ("collector.sink.influxdb.points_total", float(len(samples)), {"sink": "influxdb"}) in metrics


async def test_precision_boundaries_lose_nothing(victoriametrics: Any) -> None:
    """Samples 0.4 ms .. 1 ms apart stay distinct points with correctly rounded millisecond timestamps."""
    vm = victoriametrics
    run = uuid.uuid4().hex[:8]
    base = math.floor(time.time()) - 300.0
    offsets = [0.0, 0.001, 0.0024, 0.0026, 0.4994, 0.9994, 0.9996, 1.0016, 1.999, 2.0006]
    samples = [Sample("iwtest.precision.v", float(i), base + off, {"run": run}) for i, off in enumerate(offsets)]
    sink = make_sink(vm.url)
    await sink.send([batch(samples)])
    await sink.close()
    vm.settle(f'iwtest_precision_v{{run="{run}"}}', len(offsets))
    (s,) = vm.export(f'iwtest_precision_v{{run="{run}"}}')
    expected = {round((base + off) * 1000): float(i) for i, off in enumerate(offsets)}
    assert len(expected) == len(offsets)
    assert dict(zip(s["timestamps"], s["values"])) == expected


async def test_database_down_raises_retryable_then_everything_arrives(victoriametrics_factory: Any) -> None:
    vm = victoriametrics_factory()
    sink = make_sink(vm.url, timeout="3s", batch_size=250)
    t0 = time.time() - 600
    sent: list[Batch] = []

    def next_batch(k: int) -> Batch:
        return batch([Sample("iwtest.outage.v", float(k * 100 + j), t0 + k + j * 0.001, {"j": str(j % 7)}) for j in range(100)])

    pending: list[Batch] = []
    await sink.start()
    try:
        for k in range(20):
            b = next_batch(k)
            sent.append(b)
            pending.append(b)
            if k == 8:
                vm.stop()  # the database goes away mid-run
            if k == 14:
                vm.start()  # ... and comes back (same data dir, same port)
            try:
                await sink.send(pending)
            except SinkError as e:
                assert e.retryable, f"an unreachable database must be retryable: {e}"
                assert 8 <= k <= 13, f"send failed while the database was up (k={k}): {e}"
                assert vm.url in str(e)
                continue  # the runner keeps them queued; we do the same
            assert not (8 <= k <= 13), "send succeeded while the database was down"
            pending = []
        assert sink.failures.get("connection", 0) >= 6  # one or more failed requests per failed send
    finally:
        await sink.close()
    vm.settle("iwtest_outage_v", 2000)
    series = vm.export("iwtest_outage_v")
    got: dict[tuple[str, int], float] = {}
    dupes = 0
    for s in series:
        for ts, v in zip(s["timestamps"], s["values"]):
            key = (s["metric"]["j"], ts)
            dupes += key in got
            got[key] = v
    expected = {(s.tags["j"], round(s.ts * 1000)): s.value for b in sent for s in b.samples}
    assert len(expected) == 2000
    assert got == expected  # every point arrived, with its value (a retried chunk may be stored twice by VM)
    assert dupes == 0  # nothing was partially written before the outage, so nothing is doubled either


async def test_through_the_sink_runner_outage_then_everything_arrives(victoriametrics_factory: Any, tmp_path: Path) -> None:
    """The collector's path: SinkRunner (durable queue, backoff) around this sink; VictoriaMetrics stops and restarts.

    Batches enqueued while the database is down wait in the runner's disk queue, and a runner
    restarted on the same queue file (a collector restart during the outage) delivers them too.
    """
    sinkrunner = pytest.importorskip("collector.sinkrunner", reason="collector/sinkrunner.py (collector core) not in this tree yet")
    vm = victoriametrics_factory()
    queue = str(tmp_path / "sinks" / "influxdb.db")
    (tmp_path / "sinks").mkdir()
    runner_metrics: list[tuple[str, float, dict[str, str]]] = []

    def runner(sink: InfluxDBSink) -> Any:
        return sinkrunner.SinkRunner(
            sink, queue_path=queue, queue_max_bytes=64 * 2**20, backoff_initial=0.05, backoff_max=0.3,
            max_batches_per_send=5, emit_metric=lambda n, v, t=None: runner_metrics.append((n, v, dict(t or {}))),
        )

    t0 = time.time() - 900
    sent: list[Batch] = []

    def next_batch(k: int) -> Batch:
        return batch([Sample("iwtest.runner.v", float(k * 50 + j), t0 + k + j * 0.001, {"j": str(j % 5)}) for j in range(50)])

    sink = make_sink(vm.url, timeout="2s")
    r = runner(sink)
    await r.start()
    try:
        for k in range(10):
            sent.append(b := next_batch(k))
            r.enqueue(b)
        assert await r.flush(timeout=30), f"runner did not drain while the database was up: {r.stats}"
        vm.stop()  # the database goes away
        for k in range(10, 25):
            sent.append(b := next_batch(k))
            r.enqueue(b)  # never blocks, never raises: the batches wait on disk
        await asyncio.sleep(0.5)
        assert r.stats.depth_batches > 0, "nothing queued while the database was down"
    finally:
        await r.stop(timeout=5)  # a collector restart during the outage: the queue stays on disk
    assert sink.failures.get("connection", 0) >= 1

    vm.start()  # ... and comes back (same data dir, same port)
    sink2 = make_sink(vm.url, timeout="2s")
    r2 = runner(sink2)
    await r2.start()
    try:
        for k in range(25, 30):
            sent.append(b := next_batch(k))
            r2.enqueue(b)
        assert await r2.flush(timeout=60), f"runner did not drain after the restart: {r2.stats}"
        assert not r2.stats.dropped_batches, r2.stats
    finally:
        await r2.stop(timeout=5)
    expected = {(s.tags["j"], round(s.ts * 1000)): s.value for b in sent for s in b.samples}
    assert len(expected) == 1500
    vm.settle("iwtest_runner_v", len(expected))
    got: dict[tuple[str, int], float] = {}
    for ser in vm.export("iwtest_runner_v"):
        for ts, v in zip(ser["timestamps"], ser["values"]):
            got[(ser["metric"]["j"], ts)] = v
    assert got == expected  # every point, counted and with its value


# ---------------------------------------------------------------------------------------- HTTP status handling


class ScriptedWriteServer:
    """A loopback HTTP server answering /api/v2/write from a script of (status, headers).

    A fake on purpose: VictoriaMetrics (the only InfluxDB-protocol server that runs here) never answers
    401, 413, 429 or 503, so the status classification and Retry-After handling are tested against this.
    It also decodes each request exactly as InfluxDB would receive it (headers, gzip body).
    """

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.requests: list[dict[str, Any]] = []
        self.max_lines: int | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = gzip.decompress(raw) if request.headers.get("Content-Encoding") == "gzip" else raw
        lines = body.decode().split("\n")
        self.requests.append({"headers": dict(request.headers), "query": dict(request.query), "raw": raw, "lines": lines})
        if self.max_lines is not None and len(lines) > self.max_lines:
            return web.json_response({"code": "request too large", "message": "too many lines"}, status=413)
        status, headers = self.script.pop(0) if self.script else (204, {})
        if status == 204:
            return web.Response(status=204)
        return web.json_response({"code": "x", "message": f"scripted {status}"}, status=status, headers=headers)

    async def __aenter__(self) -> "ScriptedWriteServer":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/v2/write", self.handle)
        self.runner = web.AppRunner(app, auto_decompress=False)  # see the body exactly as sent
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.runner.cleanup()


async def test_request_format_gzip_token_org_bucket_precision() -> None:
    async with ScriptedWriteServer() as srv:
        sink = make_sink(srv.url, batch_size=3, concurrency=1)
        samples = [Sample("m.f", v, 1_700_000_000.0 + i, {"t": "a b"}) for i, v in enumerate([0.1, 5e-324, -1e300, 1 / 3, 2.0])]
        await sink.send([batch(samples, agent="h")])
        await sink.close()
    assert len(srv.requests) == 2  # 5 points at batch_size 3
    r = srv.requests[0]
    assert r["headers"]["Authorization"] == "Token t0ken"
    assert r["headers"]["Content-Encoding"] == "gzip"
    assert r["query"] == {"org": "test-org", "bucket": "test-bucket", "precision": "ms"}
    assert gzip.decompress(r["raw"]) and r["raw"][:2] == b"\x1f\x8b"
    lines = srv.requests[0]["lines"] + srv.requests[1]["lines"]
    # field values are compared as the floats they spell (orjson writes `-1e300` or `-1e+300` by version)
    parsed = [parse_line(x) for x in lines]
    assert [(m, t, {k: float(v) for k, v in f.items()}, ts) for m, t, f, ts in parsed] == [
        ("m", {"t": "a b", "host": "h"}, {"f": v}, 1_700_000_000_000 + i * 1000)
        for i, v in enumerate([0.1, 5e-324, -1e300, 1 / 3, 2.0])
    ]
    assert all(re.fullmatch(r"-?[0-9.]+(e[-+]?[0-9]+)?", v) for _, _, f, _ in parsed for v in f.values())


@pytest.mark.parametrize(
    ("status", "headers", "retryable", "retry_after"),
    [
        (503, {"Retry-After": "7"}, True, 7.0),
        (429, {"Retry-After": "2"}, True, 2.0),
        (500, {}, True, None),
        (401, {}, True, None),  # wrong token: fixed by the operator; keep the data queued meanwhile
        (404, {}, True, None),  # bucket not found: likewise
        (400, {}, False, None),  # the data itself is rejected: retrying cannot help
        (422, {}, False, None),
    ],
)
async def test_http_status_classification(status: int, headers: dict[str, str], retryable: bool, retry_after: float | None) -> None:
    async with ScriptedWriteServer() as srv:
        srv.script = [(status, headers)]
        sink = make_sink(srv.url)
        with pytest.raises(SinkError) as ei:
            await sink.send([batch([Sample("m.f", 1.0, 1_700_000_000.0)])])
        assert ei.value.retryable is retryable
        assert ei.value.retry_after == retry_after
        assert str(status) in str(ei.value) and srv.url in str(ei.value)
        assert sink.failures == {f"http_{status}": 1}
        await sink.send([batch([Sample("m.f", 1.0, 1_700_000_000.0)])])  # the next attempt succeeds
        await sink.close()


async def test_413_splits_the_request() -> None:
    async with ScriptedWriteServer() as srv:
        srv.max_lines = 300
        sink = make_sink(srv.url, batch_size=1000)
        samples = [Sample("m.f", float(i), 1_700_000_000.0 + i) for i in range(1000)]
        await sink.send([batch(samples)])
        await sink.close()
    accepted = [r["lines"] for r in srv.requests if len(r["lines"]) <= 300]
    assert sorted(float(parse_line(x)[2]["f"]) for lines in accepted for x in lines) == [float(i) for i in range(1000)]
    assert sink.points_total == 1000


async def test_a_retry_skips_batches_already_delivered() -> None:
    """A send that fails part-way: the retry writes only the batches of the failed body and after it."""
    async with ScriptedWriteServer() as srv:
        sink = make_sink(srv.url, batch_size=3, concurrency=1)
        bs = [batch([Sample("m.f", float(k * 10 + j), 1_700_000_000.0 + k * 10 + j) for j in range(2)]) for k in range(4)]
        # bodies of 3 lines: [b0 b0 b1] [b1 b2 b2] [b3 b3]; the second one fails
        srv.script = [(204, {}), (503, {})]
        with pytest.raises(SinkError) as ei:
            await sink.send(bs)
        assert ei.value.retryable
        assert len(srv.requests) == 2  # the third body is not tried once the database answered 503
        first = len(srv.requests)
        await sink.send(bs)  # the runner retries the same batches
        retried = [float(parse_line(x)[2]["f"]) for r in srv.requests[first:] for x in r["lines"]]
        assert retried == [10.0, 11.0, 20.0, 21.0, 30.0, 31.0]  # b0 was delivered in full: not written again
        # a later, fully successful send forgets: the same ids would be written again (nothing is retried then)
        await sink.send(bs[:1])
        assert [float(parse_line(x)[2]["f"]) for x in srv.requests[-1]["lines"]] == [0.0, 1.0]
        await sink.close()


async def test_unreachable_and_timeout_are_retryable() -> None:
    sink = make_sink(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SinkError) as ei:
        await sink.send([batch([Sample("m.f", 1.0, 1_700_000_000.0)])])
    assert ei.value.retryable and "cannot reach" in str(ei.value)
    await sink.close()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sink = make_sink(f"http://127.0.0.1:{port}", timeout="300ms")
    t = time.monotonic()
    with pytest.raises(SinkError) as ei:
        await sink.send([batch([Sample("m.f", 1.0, 1_700_000_000.0)])])
    assert ei.value.retryable and sink.failures == {"timeout": 1}
    assert time.monotonic() - t < 5
    await sink.close()
    server.close()


def test_yaml_example_is_the_collector_shape() -> None:
    """The example is a `sinks:` list, the shape collector.yaml takes, and the collector's own loader accepts it."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    assert doc["sinks"][0]["type"] == "influxdb"
    try:
        from collector.config import collector_config_from_dict
    except ImportError:  # pragma: no cover - collector core not in this tree
        return
    (spec,) = collector_config_from_dict({"data_dir": "/nonexistent", **doc}).sinks
    assert spec.cls is InfluxDBSink and spec.name == "influxdb"
    assert (spec.queue_max_bytes, spec.backoff_initial, spec.backoff_max, spec.max_batches_per_send) == (256 * 2**20, 0.5, 60.0, 50)
