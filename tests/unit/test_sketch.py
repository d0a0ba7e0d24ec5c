"""The latency sketch: quantiles within its stated relative error, merging equals one sketch of all values."""

from __future__ import annotations

import random

import pytest

from checks.sketch import Sketch


def _true_q(vals: list[float], q: float) -> float:
    s = sorted(vals)
    return s[int(q * (len(s) - 1))]


@pytest.mark.parametrize("alpha", [0.01, 0.02])
def test_quantiles_within_relative_error(alpha: float) -> None:
    rng = random.Random(7)
    vals = [rng.lognormvariate(-4, 1.2) for _ in range(50_000)]
    s = Sketch(alpha)
    s.extend(vals)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        t = _true_q(vals, q)
        assert abs(s.quantile(q) - t) <= alpha * t * 1.0001, q
    assert s.count == len(vals) and s.min == min(vals) and s.max == max(vals)


def test_merge_equals_single_and_round_trips() -> None:
    rng = random.Random(1)
    a_vals = [rng.expovariate(20) for _ in range(5000)]
    b_vals = [rng.expovariate(2) for _ in range(5000)] + [0.0] * 10
    a, b, both = Sketch(), Sketch(), Sketch()
    a.extend(a_vals)
    b.extend(b_vals)
    both.extend(a_vals + b_vals)
    a.merge(Sketch.from_json(b.to_json()))
    assert a.bins == both.bins and a.zero == both.zero == 10 and a.count == both.count
    assert a.sum == pytest.approx(both.sum) and (a.min, a.max) == (both.min, both.max)
    for q in (0.5, 0.95, 0.99):
        assert a.quantile(q) == both.quantile(q)


def test_malformed_payload_rejected() -> None:
    with pytest.raises(ValueError):
        Sketch.from_json({"count": 5, "bins": {"3": 1}, "zero": 0, "min": 1, "max": 2})
    with pytest.raises(ValueError):
        Sketch.from_json({"bins": "x"})
