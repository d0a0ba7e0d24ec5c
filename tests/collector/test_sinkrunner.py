"""Sink runner: durable FIFO outbox, retry until the destination recovers, bounded queue, drops counted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from checks.model import Batch, Sample
from collector.sinkrunner import SinkRunner
from collector.sinks import SINKS
from tests.collector.conftest import StartFn, base_config, make_batch
from tests.collector.fakesink import RecordingSink


def _b(i: int, n: int = 3) -> Batch:
    return Batch(f"batch-{i:06d}", "web1", time.time(), [Sample("x.y", float(j), time.time(), {"host": "web1"}) for j in range(n)])


async def _until(pred, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def test_retryable_failures_then_recovery_delivers_everything_once_in_order(tmp_path: Path) -> None:
    sink = RecordingSink()
    sink.fail_next = 4
    r = SinkRunner(sink, tmp_path / "q.db", backoff_initial=0.01, backoff_max=0.05, max_batches_per_send=7)
    await r.start()
    ids = []
    for i in range(40):
        b = _b(i)
        ids.append(b.batch_id)
        r.enqueue(b)
    assert await r.flush(10)
    assert sink.received == ids
    assert r.stats.failures == 4 and r.stats.sent_batches == 40 and r.stats.depth_batches == 0
    assert sum(r.stats.dropped_batches.values()) == 0
    await r.stop()
    assert sink.closed == 1


async def test_queue_survives_a_restart_of_the_runner(tmp_path: Path) -> None:
    down = RecordingSink()
    down.fail_next = 10**9
    r = SinkRunner(down, tmp_path / "q.db", backoff_initial=0.01, backoff_max=0.02)
    await r.start()
    for i in range(5):
        r.enqueue(_b(i))
    await _until(lambda: down.attempts >= 2)
    await r.stop()
    up = RecordingSink()
    r2 = SinkRunner(up, tmp_path / "q.db", backoff_initial=0.01)
    assert r2.stats.depth_batches == 5
    await r2.start()
    assert await r2.flush(10)
    assert up.received == [f"batch-{i:06d}" for i in range(5)]
    await r2.stop()


async def test_bounded_queue_drops_oldest_and_counts(tmp_path: Path) -> None:
    sink = RecordingSink()
    sink.fail_next = 10**9
    one = len(_b(0).to_json().__repr__())  # rough size; the bound below holds ~5 batches
    from checks.model import encode_batch

    size = len(encode_batch(_b(0)))
    r = SinkRunner(sink, tmp_path / "q.db", queue_max_bytes=size * 5 + size // 2, backoff_initial=0.01, backoff_max=0.02)
    await r.start()
    for i in range(12):
        r.enqueue(_b(i))
    assert r.stats.depth_batches == 5 and r.stats.dropped_batches["overflow"] == 7 and one > 0
    sink.fail_next = 0
    assert await r.flush(10)
    assert sink.received == [f"batch-{i:06d}" for i in range(7, 12)]
    assert ("collector.sink.dropped_total", 7.0, {"sink": "recording", "reason": "overflow"}) in r.metrics()
    await r.stop()


async def test_non_retryable_failure_drops_and_counts_then_continues(tmp_path: Path) -> None:
    sink = RecordingSink()
    sink.reject_ids = {"batch-000001"}
    r = SinkRunner(sink, tmp_path / "q.db", max_batches_per_send=1, backoff_initial=0.01)
    await r.start()
    for i in range(3):
        r.enqueue(_b(i))
    assert await r.flush(10)
    assert sink.received == ["batch-000000", "batch-000002"]
    assert r.stats.dropped_batches["rejected"] == 1
    await r.stop()


async def test_retry_after_is_honoured(tmp_path: Path) -> None:
    sink = RecordingSink()
    sink.fail_next = 1
    sink.retry_after = 0.3
    r = SinkRunner(sink, tmp_path / "q.db", backoff_initial=5.0, backoff_max=10.0)
    await r.start()
    r.enqueue(_b(0))
    assert await r.flush(5)  # would take ≥2.5 s with the plain backoff
    await r.stop()


async def test_collector_feeds_configured_sink_and_a_dead_sink_does_not_stall_ingest(
    start_collector: StartFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(SINKS, "recording", "tests.collector.fakesink:RecordingSink")
    RecordingSink.instances.clear()
    cfg = base_config(tmp_path, sinks=[
        {"type": "recording", "name": "good"},
        {"type": "recording", "name": "dead", "fail_first": 10**9, "backoff_initial": "10ms", "backoff_max": "50ms", "queue_max_bytes": "1MiB"},
    ])
    c = await start_collector(cfg)
    good, dead = RecordingSink.instances
    ids = []
    for i in range(30):
        b = make_batch("web1", 50)
        ids.append(b.batch_id)
        assert (await c.post(b))[0] == 200
    runners = {r.name: r for r in c.core.runners}
    assert await runners["good"].flush(10)
    assert good.received == ids
    assert dead.received == [] and runners["dead"].stats.depth_batches == 30 and dead.attempts >= 1
    dup = make_batch("web1", 1, batch_id=ids[0])
    assert (await c.post(dup))[1]["status"] == "duplicate"
    await asyncio.sleep(0.1)
    assert good.received == ids  # a duplicate is not forwarded again


def test_trusted_decode_equals_the_validating_decoder() -> None:
    import orjson

    from checks.model import Event, decode_batch
    from collector.sinkrunner import trusted_decode

    b = Batch("batch-trusted-1", "web1", 1_700_000_000, [Sample("a.b", 3, 1_700_000_000, {"host": "web1"}), Sample("a.c", 1.5, 1.7e9, {})],
              [Event("x.y", 1.7e9, "m", {"k": "v"}, {"n": 1})])
    raw = orjson.dumps(b.to_json())  # ints stay ints on the wire, as agents may send them
    assert trusted_decode(raw) == decode_batch(raw)
    assert type(trusted_decode(raw).samples[0].value) is float
