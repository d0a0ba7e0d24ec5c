"""The collector's running parts wired together: store, sink runners, extensions, internal samples, background jobs."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, AsyncIterator

from aiohttp import web

from checks.model import Batch, Sample, encode_batch, new_batch_id

from collector.config import CollectorConfig
from collector.extension import ExtensionContext
from collector.reader import Reader
from collector.sinkrunner import SinkRunner
from collector.store import STORE_FILE, Store
from collector.writer import IngestItem

log = logging.getLogger("collector")


class IngestStats:
    def __init__(self) -> None:
        self.requests = 0
        self.samples = 0
        self.events = 0
        self.batches = 0
        self.duplicates = 0
        self.bytes = 0
        self.rejected: Counter[str] = Counter()


class Core:
    """Everything a running collector owns. Built (without I/O) by make_app; opened in its cleanup context."""

    def __init__(self, cfg: CollectorConfig, *, up_mode: bool = False) -> None:
        self.cfg = cfg
        self.up_mode = up_mode
        self.data_dir = Path(cfg.data_dir)
        self.store_path = self.data_dir / STORE_FILE
        self.hostname = cfg.hostname or socket.gethostname()
        self.tokens = cfg.agent_tokens()
        self.reader = Reader(str(self.store_path), cfg.store, cfg.hosts)
        self.stats = IngestStats()
        self.store: Store | None = None
        self.runners: list[SinkRunner] = []
        self.started = time.time()
        self._pending_internal: list[Sample] = []
        self._plock = threading.Lock()
        self._bg: set[asyncio.Task[None]] = set()
        self.extensions: list[Any] = []
        from collector.auth import require_write_factory

        self.require_write = require_write_factory(self)
        for name, (cls, conf) in cfg.extensions.items():
            ctx = ExtensionContext(
                collector_config=cfg,
                data_dir=self.data_dir,
                store=self.reader,
                emit_metric=self.emit_metric,
                emit_samples=self.emit_samples,
                require_write=self.require_write,
                extra={"up_mode": up_mode, "hostname": self.hostname},
            )
            ext = cls(conf, ctx)
            if not getattr(ext, "name", None):
                try:
                    ext.name = name
                except AttributeError:
                    pass
            self.extensions.append(ext)

    # ------------------------------------------------------------ internal samples

    def emit_metric(self, name: str, value: float, tags: dict[str, str] | None = None) -> None:
        self.emit_samples([Sample(name, float(value), time.time(), dict(tags or {}))])

    def emit_samples(self, samples: list[Sample]) -> None:
        """Record internal samples (thread-safe); stored under the collector's host name and sent to sinks."""
        with self._plock:
            self._pending_internal.extend(samples)

    def flush_internal(self) -> None:
        with self._plock:
            samples, self._pending_internal = self._pending_internal, []
        if not samples or self.store is None:
            return
        out = []
        for s in samples:
            tags = s.tags if "host" in s.tags else {**s.tags, "host": self.hostname}
            out.append(Sample(s.name, s.value, s.ts, tags))
        for i in range(0, len(out), 5000):
            b = Batch(new_batch_id(), self.hostname, time.time(), out[i : i + 5000])
            try:
                self.store.submit(b, None, force=True)
            except Exception:  # noqa: BLE001
                log.exception("failed to record internal samples")

    # ------------------------------------------------------------ post-commit (writer thread)

    def _on_committed(self, items: list[IngestItem]) -> None:
        if not self.runners:
            return
        payload = [(it.batch.batch_id, it.raw if it.raw is not None else encode_batch(it.batch)) for it in items]
        for r in self.runners:
            try:
                r.enqueue_many(payload)
            except Exception:  # noqa: BLE001 — one broken queue must not stop the others
                log.exception("cannot queue batches for sink", extra={"sink": r.name})

    def spawn_after_commit(self, batch: Batch) -> None:
        t = asyncio.get_running_loop().create_task(self.after_commit(batch))
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)

    async def after_commit(self, batch: Batch) -> None:
        for ext in self.extensions:
            try:
                await ext.after_commit(batch)
            except Exception:  # noqa: BLE001
                log.exception("extension after_commit failed", extra={"extension": getattr(ext, "name", "?")})

    # ------------------------------------------------------------ lifecycle

    def _make_runners(self) -> list[SinkRunner]:
        from collector.sinks.base import SinkContext

        out = []
        for spec in self.cfg.sinks:
            sdir = self.data_dir / "sinks" / spec.name
            sdir.mkdir(parents=True, exist_ok=True)
            sink = spec.cls(spec.config, SinkContext(str(sdir), self.emit_metric))
            out.append(
                SinkRunner(
                    sink,
                    self.data_dir / "sinks" / f"{spec.name}.db",
                    queue_max_bytes=spec.queue_max_bytes,
                    backoff_initial=spec.backoff_initial,
                    backoff_max=spec.backoff_max,
                    max_batches_per_send=spec.max_batches_per_send,
                    emit_metric=self.emit_metric,
                    name=spec.name,
                )
            )
        return out

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup_ctx: open everything, run background jobs, close in reverse order."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.runners = await asyncio.to_thread(self._make_runners)
        self.store = await asyncio.to_thread(
            Store, self.store_path, self.cfg.store, hosts_cfg=self.cfg.hosts, extensions=self.extensions, on_committed=self._on_committed
        )
        self.store.start()
        for r in self.runners:
            await r.start()
        started_ext = []
        try:
            for ext in self.extensions:
                await ext.start(app)
                started_ext.append(ext)
        except BaseException:
            await self._close(started_ext)
            raise
        from collector.selfmetrics import self_metrics_loop

        tasks = [
            asyncio.create_task(self._maintenance_loop(), name="store-maintenance"),
            asyncio.create_task(self_metrics_loop(self), name="self-metrics"),
            asyncio.create_task(self._internal_loop(), name="internal-samples"),
        ]
        log.log(
            logging.DEBUG if self.up_mode else logging.INFO,
            "collector store open",
            extra={"path": str(self.store_path), "sinks": ",".join(r.name for r in self.runners) or "-",
                   "extensions": ",".join(getattr(e, "name", "?") for e in self.extensions) or "-"},
        )
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                try:
                    await t
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
            await self._close(started_ext)

    async def _close(self, started_ext: list[Any]) -> None:
        for ext in reversed(started_ext):
            try:
                await ext.stop()
            except Exception:  # noqa: BLE001
                log.exception("extension stop failed", extra={"extension": getattr(ext, "name", "?")})
        self.flush_internal()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        for r in self.runners:
            await r.stop()
        self.reader.close()

    async def _internal_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.flush_internal()

    async def _maintenance_loop(self) -> None:
        assert self.store is not None
        while True:
            await asyncio.sleep(self.cfg.store.maintenance_interval)
            try:
                await self.store.maintain()
            except Exception:  # noqa: BLE001
                log.exception("store maintenance failed")
