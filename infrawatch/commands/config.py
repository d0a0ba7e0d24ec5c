"""`infrawatch config validate FILE`: validate an agent, collector or alert-rules config file."""

from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = "configuration tools: `config validate FILE [--kind agent|collector|rules]`"



def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    v = sub.add_parser("validate", help="validate a config file; exit 0 when valid, 2 with a message naming file, key and line")
    v.add_argument("files", metavar="FILE", nargs="+")
    v.add_argument("--kind", choices=("auto", "agent", "collector", "rules"), default="auto")


def config_keys() -> tuple[set[str], set[str]]:
    """Top-level keys of an agent config, and those only a collector config has (from the config classes)."""
    from dataclasses import fields

    from agent.config import AgentConfig
    from collector.config import CollectorConfig
    from collector.extension import EXTENSIONS

    agent = {f.name for f in fields(AgentConfig)} - {"source"}
    collector = ({f.name for f in fields(CollectorConfig)} | set(EXTENSIONS)) - {"extensions", "config_file"} - agent
    return agent, collector


def detect_kind(data: Any) -> str:
    if isinstance(data, dict):
        keys = set(data)
        agent_keys, collector_keys = config_keys()
        if "rules" in keys and not keys & (agent_keys | collector_keys):
            return "rules"
        if keys & collector_keys and not keys & {"checks", "collector"}:
            return "collector"
    return "agent"


def validate_file(path: str, kind: str = "auto") -> str:
    """Validate one file; returns the kind it was validated as. Raises ConfigError."""
    from checks.config import load_yaml_file

    data, _lines = load_yaml_file(path)
    if kind == "auto":
        kind = detect_kind(data)
    if kind == "agent":
        from agent.config import load_agent_config

        load_agent_config(path)
    elif kind == "collector":
        from collector.config import load_collector_config

        load_collector_config(path)
    else:
        from alerting.config import load_rules_file

        load_rules_file(path)
    return kind


def run(args: argparse.Namespace) -> int:
    from checks.config import ConfigError

    rc = 0
    for f in args.files:
        try:
            kind = validate_file(f, args.kind)
        except ConfigError as e:
            print(f"invalid: {e}", file=sys.stderr)
            rc = 2
            continue
        print(f"ok: {f} (valid {kind} config)")
    return rc
