"""Label matchers (Alertmanager syntax: `a="b"`, `a!="b"`, `a=~"re"`, `a!~"re"`) shared by rules, routes, inhibition and silences."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

_MATCHER_RE = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|==|=)\s*(.*?)\s*$')


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label test. An absent label is the empty string (as in Alertmanager)."""

    name: str
    op: str  # "=", "!=", "=~", "!~"
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        assert self.regex is not None
        m = self.regex.fullmatch(v) is not None
        return m if self.op == "=~" else not m

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "value": self.value}


def make_matcher(name: str, op: str, value: str) -> Matcher:
    if op == "==":
        op = "="
    if op not in ("=", "!=", "=~", "!~"):
        raise ValueError(f"unknown matcher operator {op!r} (use =, !=, =~ or !~)")
    rx = None
    if op in ("=~", "!~"):
        try:
            rx = re.compile(value)
        except re.error as e:
            raise ValueError(f"invalid regular expression {value!r} for label {name!r}: {e}") from None
    return Matcher(name, op, value, rx)


def parse_matcher(s: str) -> Matcher:
    """Parse `label="value"` (quotes optional), `label!=v`, `label=~"re"`, `label!~re`."""
    m = _MATCHER_RE.match(s)
    if not m:
        raise ValueError(f'bad matcher {s!r}: expected label="value", label!="value", label=~"regex" or label!~"regex"')
    name, op, raw = m.groups()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        raw = raw[1:-1].replace('\\"', '"')
    return make_matcher(name, op, raw)


def parse_matchers(spec: Any) -> tuple[Matcher, ...]:
    """Matchers from a list of strings, or a mapping {label: value} where a value may start with
    `~` (regex), `!~` (negative regex) or `!` (not equal). Raises ValueError naming the bad one."""
    if spec is None:
        return ()
    out: list[Matcher] = []
    if isinstance(spec, Mapping):
        for k, v in spec.items():
            v = "" if v is None else str(v)
            if v.startswith("!~"):
                out.append(make_matcher(str(k), "!~", v[2:]))
            elif v.startswith("~"):
                out.append(make_matcher(str(k), "=~", v[1:]))
            elif v.startswith("!"):
                out.append(make_matcher(str(k), "!=", v[1:]))
            else:
                out.append(make_matcher(str(k), "=", v))
        return tuple(out)
    if isinstance(spec, str):
        spec = [s for s in _split_top(spec)]
    if not isinstance(spec, (list, tuple)):
        raise ValueError("matchers must be a list of strings like severity=\"critical\" or a mapping {label: value}")
    for item in spec:
        if not isinstance(item, str):
            raise ValueError(f"matcher must be a string like severity=\"critical\"; got {item!r}")
        out.append(parse_matcher(item))
    return tuple(out)


def _split_top(s: str) -> Iterable[str]:
    """Split `{a="x", b=~"y,z"}` or `a=x,b=y` on commas outside quotes."""
    s = s.strip()
    if s.startswith("{") and s.endswith("}"):
        s = s[1:-1]
    cur: list[str] = []
    quote = ""
    for ch in s:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            cur.append(ch)
        elif ch == ",":
            part = "".join(cur).strip()
            if part:
                yield part
            cur = []
        else:
            cur.append(ch)
    part = "".join(cur).strip()
    if part:
        yield part


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    for m in matchers:
        if not m.matches(labels):
            return False
    return True
