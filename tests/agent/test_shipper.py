"""Shipper against a real loopback HTTP endpoint: token, gzip, retries, Retry-After, permanent refusals."""

from __future__ import annotations

import asyncio
import gzip
import time
from pathlib import Path

import pytest

from agent.buffer import Buffer
from agent.shipper import CONFIG, RETRY, Shipper, build_body, parse_retry_after
from checks.model import Event, Sample, decode_batch
from tests.agent.conftest import StubCollector, make_config, wait_until
from tests.servers.net import free_port


def setup(tmp_path: Path, url: str, **ship: object) -> tuple[Shipper, Buffer]:
    cfg = make_config(tmp_path, url, ship={"backoff_initial": 0.05, "backoff_max": 0.2, "flush_interval": 0.05, **ship})
    buf = Buffer(tmp_path / "state", cfg.buffer.max_bytes)
    return Shipper(cfg, buf), buf


def fill(buf: Buffer, n: int = 3) -> None:
    now = time.time()
    buf.append([Sample("test.value", float(i), now, {"host": "testhost"}) for i in range(n)])
    buf.append([Event("check.error", now, "boom", {"check": "c", "host": "testhost"}, {"reason": "error"})])


async def test_token_gzip_and_valid_batch(tmp_path: Path, collector: StubCollector) -> None:
    sh, buf = setup(tmp_path, collector.url)
    fill(buf)
    assert await sh.drain() is None
    (a,) = collector.attempts
    assert a.status == 200
    assert a.headers["authorization"] == "Bearer test-token-123"
    assert a.headers["content-encoding"] == "gzip" and a.headers["content-type"] == "application/json"
    b = a.batch
    assert b is not None and b.agent == "testhost" and len(b.batch_id) >= 8
    assert [s.value for s in b.samples] == [0.0, 1.0, 2.0] and b.events[0].message == "boom"
    assert int(a.headers["content-length"]) < a.raw_len  # what went over the wire was compressed
    assert buf.stats.depth == 0 and sh.stats.batches == 1 and sh.stats.readings == 4
    # keep-alive: the next batches reuse the same connection
    fill(buf)
    await sh.drain()
    fill(buf)
    await sh.drain()
    assert len({a.peer for a in collector.attempts}) == 1
    sh.close()
    buf.close()


async def test_503_retry_after_is_honoured(tmp_path: Path, collector: StubCollector) -> None:
    collector.plan = [(503, {"Retry-After": "1"}, "overloaded")]
    sh, buf = setup(tmp_path, collector.url, backoff_max=5)
    fill(buf)
    stop = asyncio.Event()
    task = asyncio.create_task(sh.run(stop))
    await wait_until(lambda: len(collector.stored) == 1, what="batch stored after 503")
    stop.set()
    await task
    first, second = collector.attempts[:2]
    assert first.status == 503 and second.status == 200
    assert second.batch_id == first.batch_id  # same batch id: the collector could deduplicate
    assert second.at - first.at >= 1.0
    assert sh.stats.failures["http_5xx"] == 1
    buf.close()


async def test_500_retried_then_success(tmp_path: Path, collector: StubCollector) -> None:
    collector.plan = [(500, {}, "oops"), (500, {}, "oops")]
    sh, buf = setup(tmp_path, collector.url)
    fill(buf, 5)
    stop = asyncio.Event()
    task = asyncio.create_task(sh.run(stop))
    await wait_until(lambda: len(collector.stored) == 1, what="batch stored after two 500s")
    stop.set()
    await task
    assert [a.status for a in collector.attempts] == [500, 500, 200]
    assert len({a.batch_id for a in collector.attempts}) == 1
    assert sh.stats.failures["http_5xx"] == 2 and sh.stats.batches == 1 and buf.stats.depth == 0
    assert len(collector.samples()) == 5
    buf.close()


async def test_400_is_dropped_and_counted(tmp_path: Path, collector: StubCollector) -> None:
    collector.plan = [(400, {}, "samples[0].name: bad")]
    sh, buf = setup(tmp_path, collector.url, max_samples=4)
    fill(buf, 3)  # 3 samples + 1 event = first batch (refused)
    fill(buf, 2)  # second batch (accepted)
    assert await sh.drain() is None
    assert [a.status for a in collector.attempts] == [400, 200]
    assert buf.stats.rejected == 4 and buf.stats.depth == 0
    assert sh.stats.failures["rejected"] == 1
    assert [s.value for s in collector.samples()] == [0.0, 1.0]
    buf.close()


async def test_401_keeps_data_and_backs_off_to_max(tmp_path: Path, collector: StubCollector) -> None:
    collector.token = "another-token"
    sh, buf = setup(tmp_path, collector.url)
    fill(buf)
    out = await sh.drain()
    assert out is not None and out.kind == CONFIG and out.reason == "auth" and out.status == 401
    assert buf.stats.depth == 4 and buf.stats.rejected == 0
    assert sh.retry_delay(out) == sh.ship.backoff_max
    buf.close()


async def test_413_splits_the_batch(tmp_path: Path, collector: StubCollector) -> None:
    collector.plan = [(413, {}, "too large")]
    sh, buf = setup(tmp_path, collector.url)
    fill(buf, 2)
    fill(buf, 2)
    assert await sh.drain() is None
    assert [a.status for a in collector.attempts] == [413, 200, 200]
    assert len(collector.samples()) == 4 and buf.stats.rejected == 0
    buf.close()


async def test_unreachable_collector_is_a_retry(tmp_path: Path) -> None:
    sh, buf = setup(tmp_path, f"http://127.0.0.1:{free_port()}")
    fill(buf)
    out = await sh.drain()
    assert out is not None and out.kind == RETRY and out.reason == "network"
    assert buf.stats.depth == 4
    d = sh.retry_delay(out)
    assert 0 <= d <= sh.ship.backoff_max
    buf.close()


async def test_flush_gives_up_at_the_deadline_and_keeps_data(tmp_path: Path, collector: StubCollector) -> None:
    collector.always = (503, {"Retry-After": "30"}, "busy")
    sh, buf = setup(tmp_path, collector.url)
    fill(buf)
    assert await sh.flush(1.0) is False
    assert buf.stats.depth == 4
    buf.close()


def test_body_is_gzipped_json_batch(tmp_path: Path) -> None:
    buf = Buffer(tmp_path, 2**20)
    fill(buf, 50)
    p = buf.begin(1000, 10**6)
    assert p is not None
    raw = build_body(p, "h1")
    batch = decode_batch(gzip.decompress(raw))
    assert batch.batch_id == p.batch_id and batch.agent == "h1" and len(batch.samples) == 50 and len(batch.events) == 1
    assert len(raw) < p.nbytes
    buf.close()


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    now = 1_700_000_000.0
    from email.utils import formatdate

    assert parse_retry_after(formatdate(now + 120, usegmt=True), now=now) == pytest.approx(120, abs=1)


async def test_https_with_ca_file_and_tls_verify(tmp_path: Path) -> None:
    import ssl

    import trustme
    from aiohttp import web

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    stub = StubCollector()
    app = web.Application()
    app.router.add_post("/api/v1/batches", stub.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_ctx).start()
    url = f"https://127.0.0.1:{port}"
    try:
        for i, (collector_opts, ok) in enumerate(
            [({"ca_file": str(ca_file)}, True), ({}, False), ({"tls_verify": False}, True)]
        ):
            cfg = make_config(tmp_path / str(i), url, collector=collector_opts)
            buf = Buffer(tmp_path / str(i), 2**20)
            sh = Shipper(cfg, buf)
            fill(buf)
            out = await sh.drain()
            if ok:
                assert out is None and buf.stats.depth == 0
            else:
                assert out is not None and out.kind == RETRY and out.reason == "tls"
            sh.close()
            buf.close()
    finally:
        await runner.cleanup()
    assert len(stub.stored) == 2


async def test_429_retry_after_is_honoured_with_the_same_batch_id(tmp_path: Path, collector: StubCollector) -> None:
    collector.plan = [(429, {"Retry-After": "1"}, "slow down")]
    sh, buf = setup(tmp_path, collector.url, backoff_initial=0.01, backoff_max=5)
    fill(buf)
    stop = asyncio.Event()
    task = asyncio.create_task(sh.run(stop))
    await wait_until(lambda: len(collector.stored) == 1, what="batch stored after 429")
    stop.set()
    await task
    first, second = collector.attempts[:2]
    assert (first.status, second.status) == (429, 200) and first.batch_id == second.batch_id
    assert second.at - first.at >= 1.0  # Retry-After, not the 10 ms backoff
    assert sh.stats.failures["throttled"] == 1
    buf.close()


async def test_full_batches_leave_at_once_and_the_rest_waits_for_its_age(tmp_path: Path, collector: StubCollector) -> None:
    # flush_interval 60 s: only the count bound can make batches leave during this test
    sh, buf = setup(tmp_path, collector.url, max_samples=4, flush_interval=60)
    stop = asyncio.Event()
    task = asyncio.create_task(sh.run(stop))
    await asyncio.sleep(0.05)
    assert collector.attempts == []  # an empty buffer: the shipper sleeps, no request
    for _ in range(3):
        fill(buf, 3)  # 3 samples + 1 event = a full batch each time
    await wait_until(lambda: len(collector.stored) == 3, what="three full batches")
    assert all(len(b.samples) + len(b.events) == 4 for b in collector.stored.values())
    buf.append([Sample("test.value", 9.0, time.time(), {"host": "testhost"})])  # not full: waits for its age
    await asyncio.sleep(0.3)
    assert len(collector.stored) == 3 and buf.stats.depth == 1
    stop.set()
    await task  # the shutdown flush sends it
    assert len(collector.stored) == 4 and buf.stats.depth == 0
    buf.close()


async def test_age_bound_ships_one_batch_per_burst(tmp_path: Path, collector: StubCollector) -> None:
    sh, buf = setup(tmp_path, collector.url, flush_interval=0.3)
    stop = asyncio.Event()
    task = asyncio.create_task(sh.run(stop))
    for _ in range(3):  # a burst of check runs within the age bound: one batch
        fill(buf, 2)
        await asyncio.sleep(0.02)
    await wait_until(lambda: len(collector.stored) == 1, what="the burst shipped")
    (b,) = collector.stored.values()
    assert len(b.samples) == 6 and len(b.events) == 3
    stop.set()
    await task
    buf.close()


async def test_outage_beyond_the_buffer_bound_keeps_the_newest_and_counts_the_dropped(tmp_path: Path, collector: StubCollector) -> None:
    collector.always = (503, {}, "down")
    cfg = make_config(tmp_path, collector.url, buffer={"max_bytes": "64KiB"}, ship={"backoff_initial": 0.02, "backoff_max": 0.05, "flush_interval": 0.05})
    buf = Buffer(tmp_path / "state", cfg.buffer.max_bytes)
    sh = Shipper(cfg, buf)
    stop = asyncio.Event()
    task = asyncio.create_task(sh.run(stop))
    pad = "p" * 200
    now = time.time()
    for k in range(400):  # 400 rows of ~300 bytes: about 120 KB, twice the bound
        buf.append([Sample("test.value", float(k), now, {"host": "testhost", "pad": pad})])
        if k % 20 == 0:
            await asyncio.sleep(0.01)
    await wait_until(lambda: len(collector.attempts) >= 3, what="failed attempts")
    assert buf.stats.dropped > 0 and buf.stats.bytes <= 64 * 1024
    collector.always = None
    await wait_until(lambda: buf.stats.depth == 0, what="buffer drained after the outage")
    stop.set()
    await task
    dropped = buf.stats.dropped  # exact: rows dropped while their batch was in flight but then acknowledged are not lost
    got = sorted(s.value for s in collector.samples())
    assert len(got) + dropped == 400  # every reading either arrived or was counted as dropped
    assert got == [float(k) for k in range(400 - len(got), 400)]  # the oldest went first
    assert collector.duplicates == 0
    buf.close()
