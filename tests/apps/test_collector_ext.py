"""The exceptions extension on its own: malformed app events never break a batch, config validation, retention."""

from __future__ import annotations

import time
from typing import Any

import pytest

from checks.config import ConfigError
from checks.model import Batch, Event, new_batch_id
from checks.sketch import Sketch
from collector.exceptions import ExceptionsExtension
from tests.apps.helpers import CollectorExt


def _perf(ts: float, name: str = "GET /a", **over: Any) -> Event:
    sk = Sketch()
    sk.add(0.5)
    data = {"kind": "request", "count": 1, "errors": 0, "sum": 0.5, "min": 0.5, "max": 0.5, "sketch": sk.to_json(), "slowest": []}
    data.update(over)
    return Event("app.perf", ts, "", {"endpoint": name, "module": "order", "host": "h1"}, data)


def test_malformed_app_events_are_skipped_not_fatal(collector: CollectorExt) -> None:
    now = time.time()
    evs = [
        Event("app.exception", now, "ValueError: x", {"module": "order", "host": "h1"}, {"count": "many", "frames": "nope"}),
        Event("app.exception", now, "", {"host": "h1"}, {"type": 5, "message": None, "count": -3}),
        _perf(now, sketch={"count": 3, "bins": {"x": 1}}),
        _perf(now, kind="bogus"),
        _perf(now, sketch=None),
        Event("app.exception", now, "KeyError: 'a'", {"module": "payment", "host": "h1"}, {"type": "KeyError", "message": "'a'", "count": 2}),
        _perf(now, "GET /ok"),
    ]
    collector.ingest(Batch(new_batch_id(), "h1", now, [], evs))
    groups = {g["type"]: g for g in collector.get("/api/v1/exceptions")[1]["groups"]}
    assert groups["KeyError"]["count"] == 2 and groups["ValueError"]["count"] == 1  # bad count → 1
    assert "5" in groups  # a non-string type is stringified, not fatal
    items = collector.get("/api/v1/perf/endpoints")[1]["items"]
    assert [i["endpoint"] for i in items] == ["GET /ok"]
    assert collector.ext.writer.invalid == 3


def test_retention_prunes_old_buckets_but_keeps_groups(collector: CollectorExt) -> None:
    old = time.time() - 40 * 86400
    ev = Event("app.exception", old, "E: x", {"module": "m", "host": "h"}, {"type": "E", "message": "x", "last_ts": old, "first_ts": old})
    collector.ext._last_prune = time.time()  # the hourly prune inside in_transaction is not due yet
    collector.ingest(Batch(new_batch_id(), "h", old, [], [ev, _perf(old)]))
    conn = collector.conn
    assert conn.execute("SELECT COUNT(*) FROM app_exc_counts").fetchone()[0] == 1
    conn.execute("BEGIN")
    collector.ext.writer.prune(conn, 30 * 86400)
    conn.execute("COMMIT")
    assert conn.execute("SELECT COUNT(*) FROM app_exc_counts").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM app_perf").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM app_exc_groups").fetchone()[0] == 1
    st, body = collector.get(f"/api/v1/exceptions?start={old - 60:.0f}&end=-29d")
    assert st == 200 and body["groups"] == []


@pytest.mark.parametrize(
    ("raw", "path"),
    [({"bucket": "0s"}, "exceptions.bucket"), ({"retention": "1s"}, "exceptions.retention"), ({"nope": 1}, "exceptions.nope")],
)
def test_config_errors_name_the_key(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as ei:
        ExceptionsExtension.validate(raw, "exceptions")
    assert ei.value.path == path
    assert ExceptionsExtension.ALWAYS_ON and ExceptionsExtension.validate({}, "exceptions").bucket == 60
