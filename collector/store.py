"""The embedded time-series store: SQLite WAL file, one writer thread (group commit), thread-safe readers, backup."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

from checks.model import Batch

from collector import maintenance, schema
from collector.config import HostsConfig, StoreConfig
from collector.reader import Reader
from collector.writer import DUPLICATE, STORED, IngestItem, Overloaded, Writer

log = logging.getLogger("collector.store")

STORE_FILE = "store.db"

__all__ = ["Store", "Overloaded", "STORED", "DUPLICATE", "backup_file", "STORE_FILE"]


class Store:
    """Owns the database file: `submit` batches, `reader` for queries, `maintain` for rollups/retention."""

    def __init__(
        self,
        path: str | Path,
        cfg: StoreConfig | None = None,
        *,
        hosts_cfg: HostsConfig | None = None,
        extensions: list[Any] | None = None,
        on_committed: Callable[[list[IngestItem]], None] | None = None,
    ) -> None:
        self.path = str(path)
        self.cfg = cfg or StoreConfig()
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.writer = Writer(
            self.path,
            synchronous=self.cfg.synchronous,
            group_commit_samples=self.cfg.group_commit_samples,
            max_pending_samples=self.cfg.max_pending_samples,
            extensions=extensions,
            on_committed=on_committed,
        )
        self.writer.migrate()
        self.reader = Reader(self.path, self.cfg, hosts_cfg)
        self.last_maintenance: maintenance.MaintenanceReport | None = None

    def start(self) -> None:
        self.writer.start()

    def close(self) -> None:
        self.writer.close()
        self.reader.close()

    # ------------------------------------------------------------ writing

    def submit(self, batch: Batch, raw: bytes | None = None, *, version: str | None = None, force: bool = False) -> Any:
        """concurrent Future resolving to STORED / DUPLICATE once durably committed; raises Overloaded."""
        return self.writer.submit(batch, raw, version=version, force=force)

    async def ingest(self, batch: Batch, raw: bytes | None = None, *, version: str | None = None) -> str:
        return await asyncio.wrap_future(self.submit(batch, raw, version=version))

    async def call(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await asyncio.wrap_future(self.writer.call(fn))

    # ------------------------------------------------------------ maintenance

    def _maintain(self, conn: sqlite3.Connection, now: float | None) -> maintenance.MaintenanceReport:
        rep = maintenance.MaintenanceReport()
        while True:
            n = maintenance.rollup_dirty(conn, 2000)
            rep.rolled_series += n
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            if n < 2000:
                break
        rep.deleted = maintenance.apply_retention(conn, self.cfg, now)
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        bound = maintenance.enforce_disk_bound(conn, self.cfg.max_disk_bytes, now)
        rep.disk_bound_hit = bool(bound)
        for k, v in bound.items():
            rep.deleted[k] = rep.deleted.get(k, 0) + v
        rep.used_bytes = schema.used_bytes(conn)
        return rep

    async def maintain(self, now: float | None = None) -> maintenance.MaintenanceReport:
        """Roll up dirty ranges, apply retention and the disk bound (on the writer thread)."""
        rep = await self.call(lambda conn: self._maintain(conn, now))
        self.last_maintenance = rep
        if any(rep.deleted.values()):
            log.info("retention applied", extra={f"deleted_{k}": v for k, v in rep.deleted.items()})
        return rep

    def file_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return total

    def backup(self, dest: str | Path) -> str:
        return backup_file(self.path, dest)


def backup_file(src_path: str | Path, dest: str | Path) -> str:
    """Consistent online copy of a store file (SQLite backup API, one step = one snapshot); returns its path."""
    src_path = Path(src_path)
    if not src_path.exists():
        raise ValueError(f"no store at {src_path}")
    d = Path(dest)
    if d.is_dir():
        d = d / f"infrawatch-store-{time.strftime('%Y%m%dT%H%M%S')}.db"
    if d.exists():
        raise ValueError(f"{d} already exists; refusing to overwrite it")
    if not d.parent.is_dir():
        raise ValueError(f"directory {d.parent} does not exist")
    tmp = d.with_name(d.name + ".partial")
    src = schema.connect(src_path, readonly=True)
    try:
        dst = sqlite3.connect(str(tmp))
        try:
            src.backup(dst)  # pages=-1: the whole database in one step from one read snapshot
            if dst.execute("SELECT 1 FROM sqlite_master WHERE name = 'points_inbox'").fetchone():
                schema.merge_inbox(dst)  # rows the writer had buffered: the copy holds them in points
                dst.commit()
            dst.execute("PRAGMA journal_mode=DELETE")
            ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
            if ok != "ok":
                raise ValueError(f"backup failed its integrity check: {ok}")
        finally:
            dst.close()
    finally:
        src.close()
    os.replace(tmp, d)
    return str(d)
