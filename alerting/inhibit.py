"""Inhibition: a firing source alert mutes matching target alerts with equal labels (host down mutes that host's other alerts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from alerting.config import InhibitConfig
from alerting.matchers import Matcher, matches_all
from alerting.state import FIRING, Alert


@dataclass(frozen=True, slots=True)
class InhibitRule:
    name: str
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    #: (source label, target label) pairs that must be equal
    equal: tuple[tuple[str, str], ...]
    #: an extra test on the source alert (the built-in host-down rule tests the rule type)
    source_pred: Callable[[Alert], bool] | None = None

    def is_source(self, a: Alert) -> bool:
        if self.source_pred is not None and not self.source_pred(a):
            return False
        return matches_all(self.source, a.labels)

    def source_key(self, a: Alert) -> tuple[str, ...]:
        return tuple(a.labels.get(s, "") for s, _t in self.equal)

    def target_key(self, a: Alert) -> tuple[str, ...]:
        return tuple(a.labels.get(t, "") for _s, t in self.equal)


def compile_rules(cfgs: Iterable[InhibitConfig], default_inhibit: bool) -> list[InhibitRule]:
    out = []
    if default_inhibit:
        out.append(InhibitRule("host_down", (), (), (("host", "host"),), source_pred=lambda a: a.details.get("type") == "host_down"))
    for i, c in enumerate(cfgs):
        eq = []
        for e in c.equal:
            s, sep, t = e.partition("=")
            eq.append((s.strip(), (t if sep else s).strip()))
        out.append(InhibitRule(c.name or f"inhibit_rules[{i}]", c.parsed_source, c.parsed_target, tuple(eq)))
    return out


class Inhibitor:
    """Knows the firing source alerts; answers whether an alert is muted and by what."""

    def __init__(self, rules: list[InhibitRule]) -> None:
        self.rules = rules
        self._sources: list[dict[tuple[str, ...], set[str]]] = [{} for _ in rules]

    def refresh(self, alerts: Iterable[Alert]) -> None:
        srcs: list[dict[tuple[str, ...], set[str]]] = [{} for _ in self.rules]
        for a in alerts:
            if a.state != FIRING:
                continue
            for i, r in enumerate(self.rules):
                if r.is_source(a):
                    srcs[i].setdefault(r.source_key(a), set()).add(a.fingerprint)
        self._sources = srcs

    def muted_by(self, a: Alert) -> str | None:
        for i, r in enumerate(self.rules):
            src = self._sources[i]
            if not src:
                continue
            if r.target and not matches_all(r.target, a.labels):
                continue
            fps = src.get(r.target_key(a))
            if fps and (len(fps) > 1 or a.fingerprint not in fps):
                if r.source_pred is not None and r.is_source(a):
                    continue  # a host-down alert is not muted by another one
                return r.name
        return None
