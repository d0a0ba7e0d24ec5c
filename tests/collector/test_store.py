"""Embedded store: rollups vs raw, resolution choice, retention, disk bound, online backup while ingesting."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from checks.model import Batch, Event, Sample, new_batch_id
from collector.config import Retention, StoreConfig
from collector.store import STORED, Store, backup_file

HOUR = 3600.0


def _batch(t0: float, n: int, step: float, *, host: str = "h1", name: str = "m.v", series: int = 1, tag: str = "") -> Batch:
    extra = {"b": tag} if tag else {}
    samples = [
        Sample(name, math.sin(i / 50.0) * 100 + j, t0 + i * step, {"host": host, "k": str(j), **extra})
        for i in range(n) for j in range(series)
    ]
    return Batch(new_batch_id(), host, time.time(), samples)


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store(tmp_path / "store.db", StoreConfig())
    s.start()
    yield s
    s.close()


async def test_rollups_equal_raw_aggregates_and_resolution_is_chosen_by_range(store: Store) -> None:
    now = time.time()
    t0 = (now - 3 * 86400) // HOUR * HOUR  # 3 days ago, hour aligned
    # 2 days of 10 s samples in several batches, submitted out of order
    chunks = [_batch(t0 + k * 4 * HOUR, 1440, 10.0) for k in range(12)]
    for b in reversed(chunks):
        assert await store.ingest(b) == STORED
    rep = await store.maintain()
    assert rep.rolled_series == 1
    start, end = t0, t0 + 48 * HOUR - 1
    raw, res = store.reader.query_ex("m.v", {}, start, end, 3600, "avg", resolution="raw")
    assert res == "raw"
    for resolution in ("1m", "1h"):
        roll, r2 = store.reader.query_ex("m.v", {}, start, end, 3600, "avg", resolution=resolution)
        assert r2 == resolution
        assert [p[0] for p in roll[0]["points"]] == [p[0] for p in raw[0]["points"]]
        for (_, a), (_, b) in zip(raw[0]["points"], roll[0]["points"]):
            assert a == pytest.approx(b, rel=1e-9, abs=1e-9)
    for agg in ("min", "max", "sum", "count", "last"):
        a = store.reader.query_ex("m.v", {}, start, end, 3600, agg, resolution="raw")[0][0]["points"]
        b = store.reader.query_ex("m.v", {}, start, end, 3600, agg, resolution="1h")[0][0]["points"]
        assert [x[1] for x in a] == pytest.approx([x[1] for x in b]), agg
    # automatic choice
    r = store.reader
    assert r.choose_resolution(now - HOUR, now, None) == "raw"
    assert r.choose_resolution(now - 2 * 86400, now, None) == "1m"
    assert r.choose_resolution(now - 30 * 86400, now, None) == "1h"
    assert r.choose_resolution(now - 2 * 86400, now, 3600) == "1h"
    assert r.choose_resolution(now - 10 * 86400, now - 9.9 * 86400, None) == "1m"  # older than raw retention
    # late data for an already rolled-up hour is folded in at the next maintenance
    late = Batch(new_batch_id(), "h1", time.time(), [Sample("m.v", 1e6, t0 + 30, {"host": "h1", "k": "0"})])
    await store.ingest(late)
    await store.maintain()
    mx = store.reader.query_ex("m.v", {}, t0, t0 + HOUR - 1, 3600, "max", resolution="1h")[0][0]["points"]
    assert mx == [[t0, 1e6]]


async def test_retention_per_resolution(tmp_path: Path) -> None:
    cfg = StoreConfig(retention=Retention(raw=86400, m1=10 * 86400, h1=100 * 86400, events=86400, batch_ids=86400))
    s = Store(tmp_path / "store.db", cfg)
    s.start()
    try:
        now = time.time()
        old = (now - 5 * 86400) // HOUR * HOUR
        await s.ingest(_batch(old, 360, 10.0))
        await s.ingest(_batch(now - 600, 60, 10.0))
        await s.ingest(Batch(new_batch_id(), "h1", now, [], [Event("x.y", now - 2 * 86400, "old"), Event("x.y", now, "new")]))
        await s.maintain()
        assert len(s.reader.query_ex("m.v", {}, old - 1, now, None, None, resolution="raw")[0][0]["points"]) == 60
        assert len(s.reader.query_ex("m.v", {}, old - 1, old + 3600, None, None, resolution="1m")[0][0]["points"]) == 60
        assert [e["message"] for e in s.reader.events(None, 0, now + 1, None, 10)] == ["new"]
        # a late sample for a minute whose raw data is gone does not replace that minute's complete rollup
        await s.ingest(Batch(new_batch_id(), "h1", now, [Sample("m.v", 1e9, old + 1, {"host": "h1", "k": "0"})]))
        await s.maintain()
        first = s.reader.query_ex("m.v", {}, old, old + 59, None, "count", resolution="1m")[0][0]["points"]
        assert first == [[old, 6.0]]
        # 20 days later: 1m gone, 1h kept
        await s.maintain(now=now + 20 * 86400)
        assert s.reader.query_ex("m.v", {}, old - 1, now, None, None, resolution="1m")[0] == []
        assert len(s.reader.query_ex("m.v", {}, old - 3600, old + 3599, None, None, resolution="1h")[0][0]["points"]) == 1
        n_batches = sqlite3.connect(s.path).execute("SELECT count(*) FROM batches").fetchone()[0]
        assert n_batches == 0
    finally:
        s.close()


async def test_disk_bound_deletes_oldest_raw_first(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = Store(tmp_path / "store.db", StoreConfig(max_disk_bytes=3_000_000))
    s.start()
    try:
        now = time.time()
        t0 = now - 6 * 86400
        for k in range(30):
            await s.ingest(_batch(t0 + k * 4 * HOUR, 1440, 10.0, series=4))
        before = s.reader.query_ex("m.v", {"k": "0"}, t0 - 1, now, None, None, resolution="raw")[0][0]["points"]
        with caplog.at_level("WARNING", logger="collector.store"):
            rep = await s.maintain()
        assert rep.disk_bound_hit and rep.used_bytes <= 3_000_000
        assert any("max_disk_bytes" in r.getMessage() for r in caplog.records)
        after = s.reader.query_ex("m.v", {"k": "0"}, t0 - 1, now, None, None, resolution="raw")[0][0]["points"]
        assert 0 < len(after) < len(before)
        assert after[-1] == before[-1] and after[0][0] > before[0][0]  # the oldest went, the newest stayed
        # rollups of the deleted raw range survive
        assert s.reader.query_ex("m.v", {"k": "0"}, t0, t0 + HOUR, None, None, resolution="1m")[0]
    finally:
        s.close()


async def test_backup_while_ingesting_is_consistent_and_complete(store: Store, tmp_path: Path) -> None:
    stop = threading.Event()
    committed: list[str] = []

    def pump() -> None:
        while not stop.is_set():
            b = _batch(time.time() - 100, 200, 0.5, series=2, tag=new_batch_id())  # every batch its own series
            if store.submit(b).result() == STORED:
                committed.append(b.batch_id)

    threads = [threading.Thread(target=pump) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        while len(committed) < 20:
            time.sleep(0.01)
        before = list(committed)
        out = backup_file(store.path, tmp_path)
        assert len(committed) > 0
    finally:
        stop.set()
        for t in threads:
            t.join()
    c = sqlite3.connect(out)
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    have = {r[0] for r in c.execute("SELECT batch_id FROM batches")}
    assert set(before) <= have
    # every batch in the copy is whole: 400 points each
    n_points = c.execute("SELECT count(*) FROM points").fetchone()[0]
    assert n_points == 400 * len(have)
    with pytest.raises(ValueError, match="exists"):
        backup_file(store.path, out)
    # a restored copy opens as a store and answers queries
    restored = tmp_path / "restored"
    restored.mkdir()
    Path(out).rename(restored / "store.db")
    s2 = Store(restored / "store.db", StoreConfig())
    try:
        assert s2.reader.series("m.v")
    finally:
        s2.close()
