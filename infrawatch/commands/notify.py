"""`infrawatch notify test RECEIVER`: send a test message through every notifier of a receiver (via the collector API)."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "notifications: `notify test RECEIVER` sends a test message; `notify log` shows the delivery log"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from alerting.client import add_connection_arguments

    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("test", help="send a test message through every notifier of RECEIVER (one attempt each)")
    t.add_argument("receiver", metavar="RECEIVER")
    add_connection_arguments(t)
    lg = sub.add_parser("log", help="recent deliveries with their outcome and error")
    lg.add_argument("--limit", type=int, default=20)
    lg.add_argument("--receiver")
    lg.add_argument("--failed", action="store_true", help="only failed deliveries")
    add_connection_arguments(lg)


def _notify(client: Any, args: argparse.Namespace) -> Any:
    from urllib.parse import urlencode

    from alerting.client import dump, fmt_time, table

    if args.action == "test":
        data = client.request("POST", f"/api/v1/receivers/{args.receiver}/test")
        if args.json:
            return dump(data), 0 if data["ok"] else 1
        lines = []
        for r in data["results"]:
            if r["ok"]:
                lines.append(f"{r['integration']}: sent")
            else:
                lines.append(f"{r['integration']}: FAILED ({'retryable' if r.get('retryable') else 'not retryable'}): {r['error']}")
        return "\n".join(lines) or f"receiver {args.receiver} has no notifiers", 0 if data["ok"] else 1
    q: dict[str, Any] = {"limit": args.limit}
    if args.receiver:
        q["receiver"] = args.receiver
    if args.failed:
        q["outcome"] = "failed"
    data = client.request("GET", f"/api/v1/notifications?{urlencode(q)}")
    if args.json:
        return dump(data)
    rows = [[str(n["id"]), fmt_time(n["ts"]), n["integration"], n["status"], str(len(n["alerts"])), n["outcome"], str(n["attempts"]),
             n["error"][:80]] for n in data["notifications"]]
    return table(rows, ["ID", "TIME", "INTEGRATION", "STATUS", "ALERTS", "OUTCOME", "ATTEMPTS", "ERROR"]) if rows else "no deliveries"


def run(args: argparse.Namespace) -> int:
    from alerting.client import run_cli

    return run_cli(_notify, args, "notify")
