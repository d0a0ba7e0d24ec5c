"""`infrawatch up`: placeholder until its implementation lands."""

from __future__ import annotations

import argparse

HELP = "(not implemented yet)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise SystemExit("infrawatch up: not implemented yet")
