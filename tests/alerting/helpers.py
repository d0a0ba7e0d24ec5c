"""Builders shared by the alerting tests: batches, rules, an engine over a temp database."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from alerting.config import parse_rule
from alerting.evaluate import Engine
from alerting.rules import build_rule
from alerting.state import AlertDB
from checks.model import Batch, Event, Sample

T0 = 1_800_000_000.0  # a fixed "now" for engine tests (2027-01-15)
_ids = itertools.count(1)


def batch(agent: str, ts: float, samples: list[tuple[str, float, dict[str, str]]] = (), events: list[Event] = ()) -> Batch:  # type: ignore[assignment]
    return Batch(f"batch-{next(_ids):08d}", agent, ts, [Sample(n, v, ts, dict(t)) for n, v, t in samples], list(events))


def exc(ts: float, module: str = "payment", fp: str = "fp1", count: int = 1, **tags: str) -> Event:
    return Event("app.exception", ts, "boom", {"module": module, **tags}, {"fingerprint": fp, "type": "ValueError", "message": "boom", "count": count})


def rules(*raw: dict[str, Any]) -> list[Any]:
    return [build_rule(parse_rule(r, f"rules[{i}]"), "test") for i, r in enumerate(raw)]


def engine(tmp_path: Path, *raw: dict[str, Any], interval: float = 10.0, db: AlertDB | None = None) -> Engine:
    db = db or AlertDB(str(tmp_path / "alerting.db"))
    e = Engine(db, interval=interval, clock=lambda: T0)
    e.started_at = T0
    e.set_rules(rules(*raw))
    return e


def step(e: Engine, now: float, *batches: Batch) -> list[Any]:
    for b in batches:
        e.ingest(b)
    return e.evaluate(now)


def states(e: Engine) -> dict[str, str]:
    """alertname/labels summary → state for the engine's current alerts."""
    return {f"{a.rule}:{a.labels.get('host', '')}:{a.labels.get('module', '')}": f"{a.state}/{a.severity}" for a in e.alerts.values()}
