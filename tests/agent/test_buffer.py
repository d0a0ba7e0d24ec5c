"""Disk buffer: merge rows into batches, bound with oldest dropped and counted, survive reopen and crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.buffer import Buffer
from checks.model import Event, Sample

ROOT = Path(__file__).resolve().parents[2]


def samples(n: int, start: int = 0, pad: str = "") -> list[Sample | Event]:
    now = time.time()
    return [Sample("test.value", float(i), now, {"i": str(i), "pad": pad}) for i in range(start, start + n)]


def values(p) -> list[float]:  # noqa: ANN001
    return [s["value"] for s in p.samples]


def test_begin_merges_rows_up_to_limits_and_commit_deletes(tmp_path: Path) -> None:
    b = Buffer(tmp_path, 10 * 2**20)
    for k in range(5):
        b.append(samples(3, start=k * 3))
    b.append([Event("check.error", time.time(), "x", {"check": "c"}, {})])
    assert b.stats.depth == 16 and b.stats.rows == 6
    p = b.begin(max_readings=7, max_bytes=10**6)
    assert p is not None and p.rows == 2 and values(p) == [0, 1, 2, 3, 4, 5] and not p.resent
    # not committed: the same batch (same id) comes back
    again = b.begin(max_readings=7, max_bytes=10**6)
    assert again is not None and again.batch_id == p.batch_id and again.resent and values(again) == values(p)
    assert b.commit(p.batch_id) == 6
    assert b.stats.depth == 10
    p2 = b.begin(max_readings=100, max_bytes=10**6)
    assert p2 is not None and p2.batch_id != p.batch_id and len(p2.samples) == 9 and len(p2.events) == 1
    assert p2.events[0]["kind"] == "check.error"
    b.commit(p2.batch_id)
    assert b.begin(100, 10**6) is None and b.stats.depth == 0 and b.stats.bytes == 0
    b.close()


def test_a_single_row_larger_than_the_limits_still_ships_alone(tmp_path: Path) -> None:
    b = Buffer(tmp_path, 10 * 2**20)
    b.append(samples(50))
    b.append(samples(1, start=50))
    p = b.begin(max_readings=10, max_bytes=100)
    assert p is not None and p.rows == 1 and len(p.samples) == 50
    b.close()


def test_bounded_oldest_dropped_and_counted_persistently(tmp_path: Path) -> None:
    b = Buffer(tmp_path, 64 * 1024)
    pad = "x" * 200
    for k in range(100):  # ~100 rows of ~2.6 KB each: far beyond 64 KiB
        b.append(samples(10, start=k * 10, pad=pad))
    assert b.stats.bytes <= 64 * 1024
    assert b.stats.dropped > 0 and b.stats.dropped % 10 == 0
    kept = b.stats.depth
    assert kept + b.stats.dropped == 1000
    p = b.begin(max_readings=10**6, max_bytes=10**9)
    assert p is not None
    # the newest readings were kept, the oldest dropped: contiguous tail
    assert values(p) == [float(v) for v in range(1000 - kept, 1000)]
    b.close()
    b2 = Buffer(tmp_path, 64 * 1024)
    assert b2.stats.dropped == 1000 - kept and b2.stats.depth == kept
    b2.close()


def test_survives_reopen(tmp_path: Path) -> None:
    b = Buffer(tmp_path, 2**20)
    b.append(samples(4))
    b.close()
    b2 = Buffer(tmp_path, 2**20)
    assert b2.stats.depth == 4
    p = b2.begin(100, 10**6)
    assert p is not None and values(p) == [0, 1, 2, 3]
    b2.close()


def test_inflight_batch_resent_with_same_id_after_crash(tmp_path: Path) -> None:
    """A process takes a batch (begin) and is SIGKILLed before commit: the next start resends it under the same id."""
    code = (
        "import sys, time, os, signal\n"
        "from agent.buffer import Buffer\n"
        "from checks.model import Sample\n"
        "b = Buffer(sys.argv[1], 2**20)\n"
        "b.append([Sample('test.value', float(i), time.time(), {}) for i in range(5)])\n"
        "b.append([Sample('test.value', float(i), time.time(), {}) for i in range(5, 8)])\n"
        "p = b.begin(5, 10**6)\n"
        "print(p.batch_id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == -signal.SIGKILL, r.stderr
    bid = r.stdout.strip()
    assert len(bid) >= 8
    b = Buffer(tmp_path, 2**20)
    assert b.stats.depth == 8
    p = b.begin(100, 10**6)
    assert p is not None and p.batch_id == bid and p.resent and values(p) == [0, 1, 2, 3, 4]
    b.commit(bid)
    p2 = b.begin(100, 10**6)
    assert p2 is not None and p2.batch_id != bid and values(p2) == [5, 6, 7]
    b.close()


def test_reject_counts_and_split_halves(tmp_path: Path) -> None:
    b = Buffer(tmp_path, 2**20)
    for k in range(4):
        b.append(samples(2, start=k * 2))
    p = b.begin(100, 10**6)
    assert p is not None and p.rows == 4
    assert b.split(p.batch_id)
    half = b.begin(100, 10**6)
    assert half is not None and half.batch_id != p.batch_id and values(half) == [0, 1, 2, 3]
    assert b.reject(half.batch_id) == 4
    assert b.stats.rejected == 4 and b.stats.depth == 4
    rest = b.begin(100, 10**6)
    assert rest is not None and values(rest) == [4, 5, 6, 7]
    b.close()
    assert Buffer(tmp_path, 2**20).stats.rejected == 4


def test_inflight_rows_dropped_by_the_bound_are_forgotten(tmp_path: Path) -> None:
    b = Buffer(tmp_path, 64 * 1024)
    b.append(samples(5, pad="y" * 100))
    p = b.begin(100, 10**6)
    assert p is not None
    for k in range(100):
        b.append(samples(10, start=100 + k * 10, pad="y" * 200))
    nxt = b.begin(10**6, 10**9)
    assert nxt is not None and nxt.batch_id != p.batch_id and min(values(nxt)) >= 100
    assert b.commit(p.batch_id) == 0  # late ack of the old batch: nothing left to delete
    b.close()


def test_rows_dropped_while_their_batch_was_in_flight_are_not_counted_as_lost(tmp_path: Path) -> None:
    """The bound may drop rows of the batch being sent; when that send is acknowledged, they arrived."""
    b = Buffer(tmp_path, 64 * 1024)
    for k in range(10):
        b.append(samples(10, start=k * 10, pad="z" * 200))
    p = b.begin(10**6, 10**9)  # the whole buffer in one request
    assert p is not None and p.readings == 100
    for k in range(10, 40):  # meanwhile the bound drops the oldest rows, some of them in that batch
        b.append(samples(10, start=k * 10, pad="z" * 200))
    dropped_in_flight = b.stats.dropped
    assert 0 < dropped_in_flight
    left_in_range = 100 - min(dropped_in_flight, 100)
    assert b.commit(p.batch_id, delivered=p.readings) == left_in_range
    assert b.stats.dropped == dropped_in_flight - min(dropped_in_flight, 100)  # the in-flight ones arrived after all
    b.close()
    assert Buffer(tmp_path, 64 * 1024).stats.dropped == dropped_in_flight - min(dropped_in_flight, 100)  # persisted


def test_corrupt_database_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / "buffer.db").write_bytes(b"this is not a sqlite database" * 100)
    b = Buffer(tmp_path, 2**20)
    b.append(samples(1))
    assert b.stats.depth == 1
    assert any(n.startswith("buffer.db.corrupt-") for n in os.listdir(tmp_path))
    b.close()
