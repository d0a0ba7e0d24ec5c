"""`infrawatch check FILE`: run every check of an agent config once and print readings as JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import sys

HELP = "run every check in an agent config once and print the readings (one JSON object per line)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="agent config file (YAML); its checks are run once")
    p.add_argument("--only", metavar="NAME", action="append", help="run only the check(s) with this name or type")
    p.add_argument("--rate-wait", metavar="SECONDS", type=float, default=1.0,
                   help="checks emitting rates (counter deltas) run a second time after this long (default 1; 0: run once)")


def run(args: argparse.Namespace) -> int:
    import orjson

    from agent.config import load_agent_config
    from agent.main import run_once
    from checks.config import ConfigError
    from checks.model import Event

    try:
        cfg = load_agent_config(args.file)
    except ConfigError as e:
        print(f"infrawatch check: invalid config: {e}", file=sys.stderr)
        return 2
    if args.only:
        wanted = set(args.only)
        cfg = cfg.only_checks(wanted)
        if not cfg.checks:
            print(f"infrawatch check: no check named or typed {', '.join(sorted(wanted))} in {args.file}", file=sys.stderr)
            return 2
    readings = asyncio.run(run_once(cfg, rate_wait=max(0.0, args.rate_wait)))
    failed = 0
    out = sys.stdout
    for r in readings:
        d = r.to_json()
        d = {"reading": "event" if isinstance(r, Event) else "sample", **d}
        if isinstance(r, Event) and r.kind in ("check.error", "probe.failure"):
            failed += 1
        out.write(orjson.dumps(d).decode() + "\n")
    out.flush()
    return 1 if failed else 0
