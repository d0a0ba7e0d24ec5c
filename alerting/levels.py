"""Severity levels and threshold classification with hysteresis (a recovery threshold per level)."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Callable

SEVERITIES = ("info", "warning", "critical")
RANK = {"info": 1, "warning": 2, "critical": 3}

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(frozen=True, slots=True)
class Levels:
    """Thresholds per severity for one comparison operator, plus hysteresis.

    A level fires when `value OP threshold`. Once active, a level is held until the value crosses
    back past its recovery threshold: the threshold moved by `margin` towards the healthy side,
    where `margin = |lowest threshold - recovery|` (0 when no recovery is configured).
    """

    op: str
    thresholds: tuple[tuple[str, float], ...]  # (severity, threshold), lowest severity first
    margin: float = 0.0

    @classmethod
    def build(cls, op: str, levels: dict[str, float | None], recovery: float | None) -> "Levels":
        if op not in _OPS:
            raise ValueError(f"op must be one of {', '.join(_OPS)}")
        items = tuple((s, float(t)) for s, t in sorted(((s, t) for s, t in levels.items() if t is not None), key=lambda x: RANK[x[0]]))
        if not items:
            raise ValueError("at least one of warning or critical must be set")
        upward = op in (">", ">=")
        for (s1, t1), (s2, t2) in zip(items, items[1:]):
            if (upward and t2 < t1) or (not upward and t2 > t1):
                raise ValueError(
                    f"{s2} threshold {t2:g} must be {'above' if upward else 'below'} the {s1} threshold {t1:g} for op {op!r}"
                )
        margin = 0.0
        if recovery is not None:
            lowest = items[0][1]
            if (upward and recovery > lowest) or (not upward and recovery < lowest):
                raise ValueError(
                    f"recovery {recovery:g} must be on the healthy side of the {items[0][0]} threshold {lowest:g} "
                    f"({'at or below' if upward else 'at or above'} it)"
                )
            margin = abs(lowest - recovery)
        return cls(op, items, margin)

    def threshold_of(self, severity: str | None) -> float | None:
        for s, t in self.thresholds:
            if s == severity:
                return t
        return None

    def recovery_of(self, severity: str) -> float | None:
        t = self.threshold_of(severity)
        if t is None:
            return None
        return t - self.margin if self.op in (">", ">=") else t + self.margin

    def classify(self, value: float | None, held: str | None = None) -> tuple[str | None, float | None]:
        """The severity `value` is at (or None), given the currently active severity `held`.

        Returns (severity, threshold of that severity)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None, None
        cmp = _OPS[self.op]
        level: str | None = None
        for s, t in self.thresholds:
            if cmp(value, t):
                level = s
        if held is not None and self.margin > 0:
            held_rank = RANK.get(held, 0)
            upward = self.op in (">", ">=")
            for s, t in self.thresholds:
                if RANK[s] > held_rank:
                    break
                rec = t - self.margin if upward else t + self.margin
                still = value > rec if upward else value < rec
                if still and (level is None or RANK[s] > RANK[level]):
                    level = s
        if level is None:
            return None, None
        return level, self.threshold_of(level)
