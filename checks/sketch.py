"""Mergeable latency histogram with bounded relative error (DDSketch-style log buckets)."""

from __future__ import annotations

import math
from typing import Any, Iterable

DEFAULT_ALPHA = 0.01  # relative accuracy: a quantile is within ±1% of a real sample value
MIN_VALUE = 1e-9  # values at or below this (e.g. 0 s) go to the zero bucket
MAX_BINS = 2048  # beyond this the lowest buckets are merged (tail quantiles stay accurate)


class Sketch:
    """Log-bucketed histogram: `add`, `merge`, `quantile`; serialisable to a small JSON dict.

    Bucket i holds values in (gamma^(i-1), gamma^i] with gamma = (1+a)/(1-a); the quantile estimate
    2*gamma^i/(gamma+1) is within relative error `a` of every value in the bucket.
    """

    __slots__ = ("alpha", "gamma", "_lg", "bins", "zero", "count", "sum", "min", "max")

    def __init__(self, alpha: float = DEFAULT_ALPHA) -> None:
        if not (0 < alpha < 1):
            raise ValueError("alpha must be in (0, 1)")
        self.alpha = alpha
        self.gamma = (1 + alpha) / (1 - alpha)
        self._lg = math.log(self.gamma)
        self.bins: dict[int, int] = {}
        self.zero = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, v: float, n: int = 1) -> None:
        self.count += n
        self.sum += v * n
        if v < self.min:
            self.min = v
        if v > self.max:
            self.max = v
        if v <= MIN_VALUE:
            self.zero += n
            return
        i = math.ceil(math.log(v) / self._lg)
        b = self.bins
        b[i] = b.get(i, 0) + n
        if len(b) > MAX_BINS:
            self._collapse()

    def extend(self, values: Iterable[float]) -> None:
        for v in values:
            self.add(v)

    def _collapse(self) -> None:
        keys = sorted(self.bins)
        extra = len(keys) - MAX_BINS
        if extra <= 0:
            return
        merged = sum(self.bins.pop(k) for k in keys[: extra + 1])
        self.bins[keys[extra]] = self.bins.get(keys[extra], 0) + merged

    def merge(self, other: "Sketch") -> None:
        if abs(other.alpha - self.alpha) > 1e-12:
            raise ValueError("cannot merge sketches with different accuracy")
        for k, c in other.bins.items():
            self.bins[k] = self.bins.get(k, 0) + c
        self.zero += other.zero
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if len(self.bins) > MAX_BINS:
            self._collapse()

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0..1), within relative error alpha; None when empty."""
        if self.count == 0:
            return None
        if not 0 <= q <= 1:
            raise ValueError("q must be within [0, 1]")
        rank = q * (self.count - 1)
        if rank < self.zero:
            return max(0.0, self.min) if self.min <= MIN_VALUE else 0.0
        seen = self.zero
        for k in sorted(self.bins):
            seen += self.bins[k]
            if seen > rank:
                est = 2 * self.gamma**k / (self.gamma + 1)
                return min(max(est, self.min), self.max)
        return self.max

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def to_json(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "bins": {str(k): c for k, c in self.bins.items()},
            "zero": self.zero,
            "count": self.count,
            "sum": self.sum,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Sketch":
        """Rebuild from `to_json` output; raises ValueError on a malformed payload."""
        try:
            s = cls(float(d.get("alpha", DEFAULT_ALPHA)))
            s.bins = {int(k): int(c) for k, c in dict(d.get("bins", {})).items()}
            s.zero = int(d.get("zero", 0))
            s.count = int(d["count"])
            s.sum = float(d.get("sum", 0.0))
            if s.count:
                s.min = float(d["min"])
                s.max = float(d["max"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed sketch: {e}") from None
        if s.count != s.zero + sum(s.bins.values()) or any(c < 0 for c in s.bins.values()):
            raise ValueError("malformed sketch: bucket counts do not add up to count")
        return s
