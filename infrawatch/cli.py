"""The `infrawatch` command: a thin dispatcher to subcommand modules in infrawatch/commands/."""

from __future__ import annotations

import argparse
import importlib
import sys

from infrawatch import __version__

# One line per subcommand: name → module with HELP, add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, str] = {
    "agent": "infrawatch.commands.agent",
    "collector": "infrawatch.commands.collector",
    "up": "infrawatch.commands.up",
    "check": "infrawatch.commands.check",
    "config": "infrawatch.commands.config",
    "top": "infrawatch.commands.top",
    "alerts": "infrawatch.commands.alerts",
    "ack": "infrawatch.commands.ack",
    "silence": "infrawatch.commands.silence",
    "notify": "infrawatch.commands.notify",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="infrawatch", description="Infrastructure monitoring agent and collector.")
    p.add_argument("--version", action="version", version=f"infrawatch {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        mod = importlib.import_module(modname)
        sp = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `infrawatch check ... | head`: the reader went away
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
