"""`infrawatch agent -c agent.yaml`: run the agent daemon."""

from __future__ import annotations

import argparse
import sys

HELP = "run the agent daemon (checks → disk buffer → collector)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="agent config file (YAML)")


def run(args: argparse.Namespace) -> int:
    from agent.config import load_agent_config
    from agent.main import main as agent_main
    from checks.config import ConfigError

    try:
        cfg = load_agent_config(args.config)
    except ConfigError as e:
        print(f"infrawatch agent: invalid config: {e}", file=sys.stderr)
        return 2
    return agent_main(cfg)
