"""`infrawatch alerts`: list the collector's alerts (firing and pending by default) through its API."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlencode

HELP = "list alerts from the collector: `alerts [--state firing,pending,resolved] [--host H] [--module M] [--severity S]`"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from alerting.client import add_connection_arguments

    p.add_argument("--state", default="firing,pending", help="comma-separated states (default firing,pending; `all` for every state)")
    p.add_argument("--severity", choices=("info", "warning", "critical"))
    p.add_argument("--host")
    p.add_argument("--module")
    p.add_argument("--rule")
    add_connection_arguments(p)


def _list(client: Any, args: argparse.Namespace) -> Any:
    from alerting.client import dump, fmt_time, table

    q = {k: v for k, v in (("severity", args.severity), ("host", args.host), ("module", args.module), ("rule", args.rule)) if v}
    if args.state and args.state != "all":
        q["state"] = args.state
    data = client.request("GET", "/api/v1/alerts" + (f"?{urlencode(q)}" if q else ""))
    if args.json:
        return dump(data)
    rows = []
    for a in data["alerts"]:
        lb = a["labels"]
        where = " ".join(f"{k}={lb[k]}" for k in ("host", "module", "target", "mountpoint") if lb.get(k))
        notes = []
        if a.get("ack"):
            notes.append(f"acked by {a['ack']['by']}")
        if a.get("silenced_by"):
            notes.append(f"silenced {a['silenced_by']}")
        if a.get("inhibited_by"):
            notes.append(f"inhibited by {a['inhibited_by']}")
        rows.append([a["id"], a["state"], a["severity"], a["rule"], where, _num(a.get("value")), fmt_time(a.get("firing_since") or a["active_since"]),
                     ", ".join(notes)])
    if not rows:
        return "no alerts"
    return table(rows, ["ID", "STATE", "SEVERITY", "RULE", "WHERE", "VALUE", "SINCE", "NOTE"])


def _num(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def run(args: argparse.Namespace) -> int:
    from alerting.client import run_cli

    return run_cli(_list, args, "alerts")
