"""`infrawatch top`: top exception groups and slowest endpoints / SQL from the collector API, in the terminal."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

HELP = "top exception groups and slowest endpoints / SQL statements (from the collector API)"

LABELS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title": "infrawatch top — 最近 {window}{filters}（{now}）",
        "exceptions": "异常分组（按次数）", "endpoints": "最慢接口（按 p95）", "sql": "最慢 SQL（按 p95）",
        "count": "次数", "total": "累计", "module": "模块", "exception": "异常", "last": "最近", "hosts": "主机",
        "p50": "p50", "p95": "p95", "p99": "p99", "errors": "错误率", "endpoint": "接口", "service": "服务",
        "db": "数据库", "statement": "语句", "time": "总耗时", "none": "（无数据）", "ago": "前",
        "module_f": "模块={v}", "service_f": "服务={v}", "host_f": "主机={v}",
        "conn": "无法连接采集器 {url}：{err}", "auth": "采集器拒绝访问（HTTP {status}）：请用 --token 提供读取令牌",
        "http": "采集器返回 HTTP {status}：{body}",
    },
    "en": {
        "title": "infrawatch top — last {window}{filters} ({now})",
        "exceptions": "Exception groups (by count)", "endpoints": "Slowest endpoints (by p95)", "sql": "Slowest SQL (by p95)",
        "count": "count", "total": "total", "module": "module", "exception": "exception", "last": "last seen", "hosts": "hosts",
        "p50": "p50", "p95": "p95", "p99": "p99", "errors": "errors", "endpoint": "endpoint", "service": "service",
        "db": "db", "statement": "statement", "time": "total time", "none": "(no data)", "ago": " ago",
        "module_f": "module={v}", "service_f": "service={v}", "host_f": "host={v}",
        "conn": "cannot reach the collector at {url}: {err}", "auth": "the collector refused access (HTTP {status}): pass a read token with --token",
        "http": "the collector answered HTTP {status}: {body}",
    },
}


class TopError(Exception):
    pass


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("INFRAWATCH_URL", "http://127.0.0.1:9310"),
                   help="collector base URL (default $INFRAWATCH_URL or http://127.0.0.1:9310)")
    p.add_argument("--token", default=os.environ.get("INFRAWATCH_TOKEN"), help="read token (default $INFRAWATCH_TOKEN)")
    p.add_argument("--window", default="1h", help="time window, e.g. 15m, 1h, 7d (default 1h)")
    p.add_argument("--module", default=None, help="only this business module (payment, order, ...)")
    p.add_argument("--service", default=None, help="only this service")
    p.add_argument("--host", default=None, help="only exceptions reported by this host")
    p.add_argument("--limit", type=int, default=10, help="rows per table (default 10)")
    p.add_argument("--lang", choices=tuple(LABELS), default=os.environ.get("INFRAWATCH_LANG", "zh-CN"),
                   help="label language (default zh-CN, or $INFRAWATCH_LANG)")
    p.add_argument("--watch", type=float, default=0.0, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C")
    p.add_argument("--json", action="store_true", help="print the raw API answers as JSON")


def _get(base: str, path: str, params: dict[str, Any], token: str | None, L: dict[str, str]) -> Any:
    q = urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})
    url = f"{base.rstrip('/')}{path}?{q}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise TopError(L["auth"].format(status=e.code)) from None
        raise TopError(L["http"].format(status=e.code, body=e.read()[:300].decode(errors="replace"))) from None
    except (OSError, ValueError) as e:
        raise TopError(L["conn"].format(url=base, err=getattr(e, "reason", e))) from None


def fetch(args: argparse.Namespace) -> dict[str, Any]:
    L = LABELS[args.lang]
    common = {"window": args.window, "module": args.module, "service": args.service, "limit": args.limit}
    return {
        "exceptions": _get(args.url, "/api/v1/exceptions", {**common, "host": args.host, "sort": "count"}, args.token, L),
        "endpoints": _get(args.url, "/api/v1/perf/endpoints", {**common, "sort": "p95"}, args.token, L),
        "sql": _get(args.url, "/api/v1/perf/sql", {**common, "sort": "p95"}, args.token, L),
    }


def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in s)


def _fit(s: str, n: int) -> str:
    s = " ".join(str(s).split())
    if _width(s) <= n:
        return s + " " * (n - _width(s))
    out, w = "", 0
    for c in s:
        cw = 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
        if w + cw > n - 1:
            break
        out += c
        w += cw
    return out + "…" + " " * (n - w - 1)


def _table(headers: list[str], rows: list[list[str]], widths: list[int]) -> list[str]:
    lines = ["  ".join(_fit(h, w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("─" * w for w in widths))
    lines += ["  ".join(_fit(c, w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return lines


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.1f}ms" if v < 10 else f"{v:.1f}s"


def _ago(ts: float, now: float, L: dict[str, str]) -> str:
    d = max(now - ts, 0)
    s = f"{d:.0f}s" if d < 60 else f"{d / 60:.0f}m" if d < 3600 else f"{d / 3600:.1f}h" if d < 86400 else f"{d / 86400:.1f}d"
    return s + L["ago"]


def render(data: dict[str, Any], args: argparse.Namespace, now: float | None = None, width: int = 120) -> str:
    L = LABELS[args.lang]
    now = now or time.time()
    filters = "".join(f", {L[k + '_f'].format(v=v)}" for k, v in (("module", args.module), ("service", args.service), ("host", args.host)) if v)
    out = [L["title"].format(window=args.window, filters=filters, now=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))), ""]
    rest = max(width - 62, 30)
    out.append(L["exceptions"])
    groups = data["exceptions"].get("groups", [])
    if groups:
        out += _table([L["count"], L["total"], L["module"], L["hosts"], L["last"], L["exception"]],
                      [[str(g.get("window_count", 0)), str(g.get("count", 0)), g.get("module", ""), str(len(g.get("hosts", []))),
                        _ago(g.get("last_seen", now), now, L), f"#{g.get('id')} {g.get('type', '')}: {g.get('message', '')}"]
                       for g in groups], [8, 9, 10, 5, 10, rest])
    else:
        out.append(L["none"])
    out.append("")
    out.append(L["endpoints"])
    eps = data["endpoints"].get("items", [])
    if eps:
        out += _table([L["p95"], L["p99"], L["p50"], L["count"], L["errors"], L["module"], L["endpoint"]],
                      [[_ms(e.get("p95_seconds")), _ms(e.get("p99_seconds")), _ms(e.get("p50_seconds")), str(e.get("count", 0)),
                        f"{e.get('error_rate', 0) * 100:.1f}%", e.get("module", ""), e.get("endpoint", "")] for e in eps],
                      [9, 9, 9, 8, 7, 10, rest - 4])
    else:
        out.append(L["none"])
    out.append("")
    out.append(L["sql"])
    sql = data["sql"].get("items", [])
    if sql:
        out += _table([L["p95"], L["p99"], L["count"], L["time"], L["db"], L["module"], L["statement"]],
                      [[_ms(s.get("p95_seconds")), _ms(s.get("p99_seconds")), str(s.get("count", 0)), _ms(s.get("total_seconds")),
                        s.get("db", ""), s.get("module", ""), s.get("statement", "")] for s in sql],
                      [9, 9, 8, 10, 10, 10, rest - 8])
    else:
        out.append(L["none"])
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    import shutil

    if args.limit < 1 or args.limit > 1000:
        print("--limit must be between 1 and 1000", file=sys.stderr)
        return 2
    try:
        while True:
            try:
                data = fetch(args)
            except TopError as e:
                print(str(e), file=sys.stderr)
                return 1
            if args.json:
                print(json.dumps(data, ensure_ascii=False, indent=2))
            else:
                if args.watch:
                    sys.stdout.write("\x1b[H\x1b[2J")
                print(render(data, args, width=shutil.get_terminal_size((120, 40)).columns))
            if not args.watch:
                return 0
            sys.stdout.flush()
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 130
