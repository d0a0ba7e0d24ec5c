"""The collector daemon: run the app on its listen address, systemd notify/watchdog, clean stop; store backup."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Callable

from aiohttp import web

from checks.runtime import sdnotify
from checks.runtime.logs import setup_logging

from collector.app import CORE, make_app
from collector.config import CollectorConfig
from collector.store import STORE_FILE, backup_file

log = logging.getLogger("collector")


async def _watchdog(app: web.Application, interval: float) -> None:
    core = app[CORE]
    while True:
        await asyncio.sleep(interval)
        st = core.store
        if st is not None and st.writer._thread is not None and st.writer._thread.is_alive():
            sdnotify.notify("WATCHDOG=1")
        else:
            log.error("store writer is not running; withholding the systemd watchdog ping")


async def run_collector(
    cfg: CollectorConfig, stop: asyncio.Event, *, up_mode: bool = False, on_ready: Callable[[], None] | None = None
) -> None:
    """Serve until `stop` is set. Raises OSError when the address cannot be bound or the store cannot open."""
    app = make_app(cfg, up_mode=up_mode)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, cfg.listen_host, cfg.listen_port, reuse_address=True, backlog=1024)
        await site.start()
        log.log(logging.DEBUG if up_mode else logging.INFO, "collector listening", extra={"listen": cfg.listen, "data_dir": cfg.data_dir, "up_mode": up_mode})
        sdnotify.notify("READY=1\nSTATUS=collector listening on " + cfg.listen)
        if on_ready is not None:
            on_ready()
        wd = sdnotify.watchdog_interval()
        wd_task = asyncio.create_task(_watchdog(app, wd)) if wd else None
        try:
            await stop.wait()
        finally:
            if wd_task is not None:
                wd_task.cancel()
        sdnotify.notify("STOPPING=1")
        log.info("collector stopping")
    finally:
        await runner.cleanup()
    log.info("collector stopped")


def main(cfg: CollectorConfig) -> int:
    """Run the daemon until SIGTERM/SIGINT. 0 on a clean stop, 1 when it cannot run."""
    setup_logging(cfg.log.level, cfg.log.format)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_collector(cfg, stop)

    try:
        asyncio.run(_main())
    except OSError as e:
        log.error("collector cannot run", extra={"error": f"{type(e).__name__}: {e}", "listen": cfg.listen, "data_dir": cfg.data_dir})
        return 1
    except Exception as e:  # noqa: BLE001
        log.exception("collector failed", extra={"error": f"{type(e).__name__}: {e}"})
        return 1
    return 0


def backup(cfg: CollectorConfig, dest: str | Path) -> str:
    """Consistent copy of the store while the collector runs (SQLite online backup); dest a new file or a dir."""
    return backup_file(Path(cfg.data_dir) / STORE_FILE, dest)
