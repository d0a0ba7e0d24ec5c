"""`infrawatch ack ID`: acknowledge a firing alert (stops its repeats and escalation) through the collector API."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "acknowledge a firing alert: `ack ID [--by NAME] [--comment TEXT]` (ID or a unique prefix of at least 4 characters)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from alerting.client import add_connection_arguments

    p.add_argument("id", metavar="ID", help="alert id (from `infrawatch alerts`)")
    p.add_argument("--by", default=None, help="who acknowledges (default: your user name)")
    p.add_argument("--comment", "-m", default="", help="a note shown with the alert")
    add_connection_arguments(p)


def _ack(client: Any, args: argparse.Namespace) -> Any:
    from alerting.client import dump, fmt_time, user_name

    data = client.request("POST", f"/api/v1/alerts/{args.id}/ack", {"by": args.by or user_name(), "comment": args.comment})
    if args.json:
        return dump(data)
    ack = data["ack"]
    return f"alert {data['alert']} acknowledged by {ack['by']} at {fmt_time(ack['at'])}"


def run(args: argparse.Namespace) -> int:
    from alerting.client import run_cli

    return run_cli(_ack, args, "ack")
