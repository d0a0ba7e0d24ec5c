"""The collector's own health metrics (collector.ingest.*, collector.store.*, collector.sink.*, collector.process.*)."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from typing import TYPE_CHECKING

from checks.catalogue import MetricSpec, register_metrics
from checks.model import Sample

if TYPE_CHECKING:
    from collector.core import Core

log = logging.getLogger("collector")

COLLECTOR_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("collector.ingest.requests_total", "count", "counter", "POST /api/v1/batches requests received"),
    MetricSpec("collector.ingest.batches_total", "count", "counter", "batches stored"),
    MetricSpec("collector.ingest.duplicates_total", "count", "counter", "batches answered as duplicates (already stored)"),
    MetricSpec("collector.ingest.samples_total", "count", "counter", "samples stored from agents"),
    MetricSpec("collector.ingest.events_total", "count", "counter", "events stored from agents"),
    MetricSpec("collector.ingest.bytes_total", "bytes", "counter", "request body bytes received (as sent, compressed)"),
    MetricSpec("collector.ingest.rejected_total", "count", "counter", "refused ingest requests by reason", ("reason",)),
    MetricSpec("collector.ingest.pending_samples", "count", "gauge", "samples waiting for the store writer"),
    MetricSpec("collector.store.bytes", "bytes", "gauge", "size of the store files (database, WAL)"),
    MetricSpec("collector.store.used_bytes", "bytes", "gauge", "bytes used inside the database (without free pages)"),
    MetricSpec("collector.store.commits_total", "count", "counter", "write transactions (group commits)"),
    MetricSpec("collector.store.commit_seconds_total", "seconds", "counter", "time spent in write transactions"),
    MetricSpec("collector.store.extension_errors_total", "count", "counter", "batches on which an extension failed (stored without its data)"),
    MetricSpec("collector.sink.queue_depth_batches", "count", "gauge", "batches queued for a sink", ("sink",)),
    MetricSpec("collector.sink.queue_bytes", "bytes", "gauge", "bytes queued for a sink", ("sink",)),
    MetricSpec("collector.sink.sent_batches_total", "count", "counter", "batches delivered by a sink", ("sink",)),
    MetricSpec("collector.sink.sent_samples_total", "count", "counter", "samples delivered by a sink", ("sink",)),
    MetricSpec("collector.sink.failures_total", "count", "counter", "failed send attempts of a sink", ("sink",)),
    MetricSpec("collector.sink.dropped_total", "count", "counter", "batches a sink dropped (overflow, rejected, corrupt)", ("sink", "reason")),
    MetricSpec("collector.process.cpu_seconds_total", "seconds", "counter", "CPU seconds used by the collector process"),
    MetricSpec("collector.process.rss_bytes", "bytes", "gauge", "resident memory of the collector process"),
)
register_metrics(*COLLECTOR_METRICS)

REJECT_REASONS = ("auth", "too_large", "bad_encoding", "json", "schema", "overloaded", "store_error")


def _rss() -> float:
    try:
        with open("/proc/self/statm") as f:
            return float(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def collect(core: "Core") -> list[Sample]:
    now = time.time()
    st = core.stats
    vals: list[tuple[str, float, dict[str, str]]] = [
        ("collector.ingest.requests_total", st.requests, {}),
        ("collector.ingest.batches_total", st.batches, {}),
        ("collector.ingest.duplicates_total", st.duplicates, {}),
        ("collector.ingest.samples_total", st.samples, {}),
        ("collector.ingest.events_total", st.events, {}),
        ("collector.ingest.bytes_total", st.bytes, {}),
    ]
    for r in REJECT_REASONS:
        vals.append(("collector.ingest.rejected_total", st.rejected[r], {"reason": r}))
    if core.store is not None:
        w = core.store.writer
        vals += [
            ("collector.ingest.pending_samples", w.pending_samples, {}),
            ("collector.store.bytes", core.store.file_bytes(), {}),
            ("collector.store.commits_total", w.stats.commits, {}),
            ("collector.store.commit_seconds_total", w.stats.commit_seconds, {}),
            ("collector.store.extension_errors_total", w.stats.extension_errors, {}),
        ]
        if core.store.last_maintenance is not None:
            vals.append(("collector.store.used_bytes", core.store.last_maintenance.used_bytes, {}))
    for runner in core.runners:
        vals += runner.metrics()
    t = os.times()
    vals.append(("collector.process.cpu_seconds_total", t.user + t.system, {}))
    vals.append(("collector.process.rss_bytes", _rss(), {}))
    return [Sample(n, float(v), now, dict(tags)) for n, v, tags in vals]


async def self_metrics_loop(core: "Core") -> None:
    interval = core.cfg.self_metrics_interval
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            core.emit_samples(collect(core))
        except Exception:  # noqa: BLE001
            log.exception("self metrics failed")
