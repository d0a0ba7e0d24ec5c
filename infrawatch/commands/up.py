"""`infrawatch up`: try-it-now mode — a collector on the embedded store plus a local agent, in one process."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = "run a collector on the embedded store and a local agent with the default system checks (no config needed)"

DEFAULT_LISTEN = "127.0.0.1:9310"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "infrawatch"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT", help=f"collector API address (default {DEFAULT_LISTEN})")
    p.add_argument("--data-dir", default=None, metavar="DIR", help=f"where data is kept (default {default_data_dir()})")
    p.add_argument("--agent-config", default=None, metavar="FILE", help="use this agent config instead of the default system checks")
    p.add_argument("--collector-config", default=None, metavar="FILE", help="use this collector config (its listen/data_dir are overridden)")
    p.add_argument("--interval", default=None, metavar="SECONDS", type=float, help="interval of the default checks (default 10)")


def parse_listen(s: str) -> tuple[str, int]:
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit() or not (0 < int(port) < 65536):
        raise ValueError(f"--listen must be HOST:PORT, got {s!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import secrets
    import signal

    from checks.config import ConfigError
    from checks.runtime.logs import setup_logging

    try:
        host, port = parse_listen(args.listen)
    except ValueError as e:
        print(f"infrawatch up: {e}", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    try:
        (data_dir / "collector").mkdir(parents=True, exist_ok=True)
        (data_dir / "agent").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"infrawatch up: cannot create data dir {data_dir}: {e.strerror}", file=sys.stderr)
        return 2

    from agent.config import AgentConfig, load_agent_config
    from collector.config import CollectorConfig, load_collector_config

    token = secrets.token_urlsafe(24)
    url = f"http://{host if ':' not in host else '[' + host + ']'}:{port}"
    try:
        if args.collector_config:
            ccfg = load_collector_config(args.collector_config).for_up(data_dir=str(data_dir / "collector"), listen=f"{host}:{port}", local_token=token)
        else:
            ccfg = CollectorConfig.default(data_dir=str(data_dir / "collector"), listen=f"{host}:{port}", local_token=token)
        if args.agent_config:
            acfg = load_agent_config(args.agent_config).for_up(collector_url=url, token=token, state_dir=str(data_dir / "agent"))
        else:
            acfg = AgentConfig.default(collector_url=url, token=token, state_dir=str(data_dir / "agent"), interval=args.interval)
    except ConfigError as e:
        print(f"infrawatch up: invalid config: {e}", file=sys.stderr)
        return 2

    setup_logging(ccfg.log.level, ccfg.log.format)

    from agent.main import run_agent
    from collector.main import run_collector

    import logging

    # the banner below is the first thing `up` prints: extensions' start-up lines wait until after it
    quiet = [logging.getLogger(n) for n in ("alerting",)]
    for lg in quiet:
        lg.setLevel(logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ready = asyncio.Event()

        def on_ready() -> None:
            ready.set()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(run_collector(ccfg, stop, up_mode=True, on_ready=on_ready))
            await ready.wait()
            print(
                f"infrawatch is up.\n"
                f"  collector API : {url}/api/v1/hosts   (also /api/v1/series, /api/v1/query?metric=system.cpu.usage_percent)\n"
                f"  console       : {url}/ui/\n"
                f"  health        : {url}/healthz\n"
                f"  data          : {data_dir}\n"
                f"Press Ctrl-C to stop.",
                flush=True,
            )
            for lg in quiet:
                lg.setLevel(logging.NOTSET)
            tg.create_task(run_agent(acfg, stop))

    try:
        asyncio.run(main())
    except OSError as e:
        print(f"infrawatch up: {e}", file=sys.stderr)
        return 1
    return 0
