"""Structured logging: `event key=value ...` lines on a terminal, one JSON object per line under systemd."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import orjson

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _fmt_value(v: Any) -> str:
    s = str(v)
    if not s or any(c in s for c in ' ="\n'):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        parts = [f"{ts} {record.levelname.lower():7s} {record.name}: {record.getMessage()}"]
        for k, v in record.__dict__.items():
            if k not in _RESERVED and not k.startswith("_"):
                parts.append(f"{k}={_fmt_value(v)}")
        if record.exc_info:
            parts.append("\n" + self.formatException(record.exc_info))
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        d: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _RESERVED and not k.startswith("_"):
                d[k] = v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(d).decode()


def setup_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure the root logger. fmt: auto (JSON under systemd's journal, key=value otherwise), json, text.

    Log with `log.info("shipped batch", extra={"batch_id": bid, "samples": n})`.
    """
    if fmt == "auto":
        fmt = "json" if os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID") else "text"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
