"""Normalisation for grouping: SQL fingerprints (literals → ?) and exception fingerprints."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Iterable, Mapping

# ---------------------------------------------------------------- SQL

_SQL_TOKEN = re.compile(
    r"""
    (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<str>'(?:[^'\\]|\\.|'')*'|E'(?:[^'\\]|\\.|'')*')
  | (?P<dollar>\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$)
  | (?P<qident>"(?:[^"]|"")*"|`[^`]*`)
  | (?P<cast>::)
  | (?P<param>\$\d+|%\(\w+\)s|%s|(?<!:):[A-Za-z_]\w*|\?)
  | (?P<num>(?<![\w.])-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)(?![\w]))
  | (?P<word>[A-Za-z_][\w$]*(?:\.[A-Za-z_*][\w$]*)*)
  | (?P<ws>\s+)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


_SQL_KEYWORDS = frozenset(
    "select from where and or not in values into join on as using exists any all set table update insert delete "
    "having by group order limit offset union returning when then else case".split()
)


def _tokens(sql: str) -> list[str]:
    toks: list[str] = []
    for m in _SQL_TOKEN.finditer(sql):
        kind = m.lastgroup
        if kind in ("comment", "ws", "tag"):
            continue
        if kind in ("str", "dollar", "param", "num"):
            toks.append("?")
        elif kind == "word":
            toks.append(m.group().lower())
        else:
            toks.append(m.group())
    return toks


def _collapse_lists(toks: list[str]) -> list[str]:
    """`in (?, ?, ?)` → `in (?+)`; `values (?, ?), (?, ?)` → `values (?+)`."""
    out: list[str] = []
    i = 0
    n = len(toks)
    while i < n:
        t = toks[i]
        if t == "(" and out and out[-1] in ("in", "values"):
            j = i + 1
            while j < n and toks[j] == "?" and j + 1 < n and toks[j + 1] in (",", ")"):
                if toks[j + 1] == ")":
                    break
                j += 2
            if j < n and toks[j] == "?" and j + 1 < n and toks[j + 1] == ")":
                out.extend(("(", "?+", ")"))
                i = j + 2
                # a multi-row VALUES list: drop following `, (?, ...)` groups
                if len(out) >= 4 and out[-4] == "values":
                    while i + 1 < n and toks[i] == "," and toks[i + 1] == "(":
                        k = i + 2
                        while k < n and toks[k] in ("?", ","):
                            k += 1
                        if k < n and toks[k] == ")":
                            i = k + 1
                        else:
                            break
                continue
        out.append(t)
        i += 1
    return out


def sql_normalize(sql: str, max_len: int = 4096) -> str:
    """A literal-free, lower-cased, whitespace-collapsed form of a statement.

    `WHERE id = 1` and `WHERE id = 2` give the same text; `IN (1,2,3)` → `in (?+)`; multi-row
    `VALUES` collapse to one; comments dropped; quoted identifiers kept as written; a trailing `;`
    dropped. Parameters never survive in clear.
    """
    toks = _collapse_lists(_tokens(sql[: max_len * 4]))
    while toks and toks[-1] == ";":
        toks.pop()
    parts: list[str] = []
    for t in toks:
        call = t == "(" and parts and parts[-1][-1:].isalnum() and parts[-1] not in _SQL_KEYWORDS
        if parts and (call or t in (")", ",", ".") or parts[-1].endswith(("(", "."))):
            parts[-1] += t
        else:
            parts.append(t)
    return " ".join(parts)[:max_len]


def sql_fingerprint(sql: str) -> tuple[str, str]:
    """(fingerprint id — 16 hex chars, normalised text) of a SQL statement."""
    norm = sql_normalize(sql)
    return hashlib.sha1(norm.encode()).hexdigest()[:16], norm


# ---------------------------------------------------------------- exceptions

_MSG_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"), "<email>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b[0-9a-fA-F]{12,}\b"), "<hex>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"(?<![A-Za-z])[-+]?\d+(?:[.,]\d+)*"), "<n>"),
)


def normalize_message(msg: str, max_len: int = 512) -> str:
    """Strip volatile parts (numbers, ids, UUIDs, hex, quoted values, addresses) from an exception message."""
    s = msg.strip()[: max_len * 4]
    for rx, repl in _MSG_PATTERNS:
        s = rx.sub(repl, s)
    return re.sub(r"\s+", " ", s)[:max_len]


def frame_key(frame: Mapping[str, Any]) -> str:
    """A line-number-free identity of a stack frame: module (or file basename) + function."""
    mod = frame.get("module") or ""
    if not mod:
        f = str(frame.get("file") or frame.get("filename") or "")
        mod = f.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    return f"{mod}:{frame.get('function') or frame.get('func') or '?'}"


def exception_fingerprint(exc_type: str, message: str, frames: Iterable[Mapping[str, Any]], top: int = 5) -> str:
    """Group id of an exception: type + normalised message + the innermost `top` in-app frames.

    Frames are outermost-first (as in a Python traceback). Frames with `in_app: false` (libraries)
    are skipped when any frame is in-app; line numbers never count, so an edit elsewhere in a file,
    or the same bug on another host, keeps the same group.
    """
    fl = list(frames)
    in_app = [f for f in fl if f.get("in_app", True)]
    chosen = (in_app or fl)[-top:]
    h = hashlib.sha1()
    h.update(exc_type.strip().encode())
    h.update(b"\0")
    h.update(normalize_message(message).encode())
    for f in chosen:
        h.update(b"\0")
        h.update(frame_key(f).encode())
    return h.hexdigest()[:20]
