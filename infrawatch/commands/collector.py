"""`infrawatch collector -c collector.yaml [backup DEST]`: run the collector daemon or back up its store."""

from __future__ import annotations

import argparse
import sys

HELP = "run the collector daemon (ingest, store, sinks, alerting, API), or `collector -c FILE backup DEST`"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="collector config file (YAML)")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    b = sub.add_parser("backup", help="make a consistent copy of the embedded store while the collector runs")
    b.add_argument("dest", metavar="DEST", help="destination file (must not exist) or directory")


def run(args: argparse.Namespace) -> int:
    from checks.config import ConfigError
    from collector.config import load_collector_config

    try:
        cfg = load_collector_config(args.config)
    except ConfigError as e:
        print(f"infrawatch collector: invalid config: {e}", file=sys.stderr)
        return 2
    if args.action == "backup":
        from collector.main import backup

        try:
            out = backup(cfg, args.dest)
        except (OSError, ValueError) as e:
            print(f"infrawatch collector backup: {e}", file=sys.stderr)
            return 1
        print(f"backup written to {out}")
        return 0
    from collector.main import main as collector_main

    return collector_main(cfg)
