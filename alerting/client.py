"""A small synchronous client of the collector's alerting API for the CLI (`infrawatch alerts|ack|silence|notify`)."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:9310"


class ApiError(Exception):
    """The collector answered with an error (`status` set) or could not be reached (`status` None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def add_connection_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=None, metavar="URL", help=f"collector URL (default $INFRAWATCH_URL or {DEFAULT_URL})")
    p.add_argument("--token", default=None, metavar="TOKEN", help="API token (default $INFRAWATCH_TOKEN); changes need an admin token (collector admin_tokens)")
    p.add_argument("--timeout", default=10.0, type=float, metavar="SECONDS", help="request timeout (default 10)")
    p.add_argument("--json", action="store_true", help="print the API's JSON answer")


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 10.0) -> None:
        self.url = (url or os.environ.get("INFRAWATCH_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("INFRAWATCH_TOKEN")
        self.timeout = timeout

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Client":
        return cls(args.url, args.token, args.timeout)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                msg = json.loads(raw).get("error") or raw.decode("utf-8", "replace")
            except (ValueError, AttributeError):
                msg = raw.decode("utf-8", "replace").strip()
            if e.code in (401, 403):
                hint = (" (no token given: --token or $INFRAWATCH_TOKEN)" if not self.token
                        else " (changes need a token from the collector's admin_tokens)" if method != "GET" else "")
            else:
                hint = ""
            raise ApiError(f"HTTP {e.code}: {msg}{hint}", e.code) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ApiError(f"cannot reach the collector at {self.url}: {reason}") from None
        return json.loads(raw) if raw else None


def fmt_time(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "cli"


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)] if rows else [len(h) for h in headers]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(headers, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def run_cli(fn: Any, args: argparse.Namespace, prog: str) -> int:
    """Call fn(client, args) → printable; 0 on success, 1 when the API refused, 2 when unreachable."""
    client = Client.from_args(args)
    try:
        out = fn(client, args)
    except ApiError as e:
        print(f"infrawatch {prog}: {e}", file=sys.stderr)
        return 1 if e.status is not None else 2
    if isinstance(out, tuple):
        text, rc = out
    else:
        text, rc = out, 0
    if text:
        print(text)
    return rc


def dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)
