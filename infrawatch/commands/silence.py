"""`infrawatch silence add|list|expire`: manage silences (matchers with an end time that mute alerts) through the collector API."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "silences: `silence add MATCHER... --duration 2h [--comment T]`, `silence list [--all]`, `silence expire ID`"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from alerting.client import add_connection_arguments

    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = sub.add_parser("add", help='mute alerts matching every MATCHER (label="value", label!="v", label=~"regex", label!~"regex")')
    a.add_argument("matchers", metavar="MATCHER", nargs="+")
    a.add_argument("--duration", "-d", default="1h", help="how long (10m, 2h, 1d; default 1h)")
    a.add_argument("--comment", "-m", default="", help="why")
    a.add_argument("--by", default=None, help="who (default: your user name)")
    add_connection_arguments(a)
    ls = sub.add_parser("list", help="list active and pending silences")
    ls.add_argument("--all", action="store_true", help="also expired ones")
    add_connection_arguments(ls)
    ex = sub.add_parser("expire", help="end a silence now")
    ex.add_argument("id", metavar="ID")
    add_connection_arguments(ex)


def _silence(client: Any, args: argparse.Namespace) -> Any:
    from alerting.client import dump, fmt_time, table, user_name

    if args.action == "add":
        data = client.request("POST", "/api/v1/silences", {"matchers": args.matchers, "duration": args.duration, "comment": args.comment,
                                                          "created_by": args.by or user_name()})
        s = data["silence"]
        return dump(data) if args.json else f"silence {s['id']} active until {fmt_time(s['ends_at'])}: {', '.join(s['matchers'])}"
    if args.action == "expire":
        data = client.request("DELETE", f"/api/v1/silences/{args.id}")
        return dump(data) if args.json else f"silence {data['silence']['id']} expired"
    data = client.request("GET", "/api/v1/silences")
    items = [s for s in data["silences"] if args.all or s["status"] != "expired"]
    if args.json:
        return dump({"silences": items})
    if not items:
        return "no silences"
    rows = [[s["id"], s["status"], ", ".join(s["matchers"]), fmt_time(s["starts_at"]), fmt_time(s["ends_at"]), s["created_by"], s["comment"]]
            for s in items]
    return table(rows, ["ID", "STATUS", "MATCHERS", "STARTS", "ENDS", "BY", "COMMENT"])


def run(args: argparse.Namespace) -> int:
    from alerting.client import run_cli

    return run_cli(_silence, args, "silence")
