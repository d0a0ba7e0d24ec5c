"""Rule engine: pending → firing → resolved with `for:`, hysteresis, every rule type, persistence across restarts."""

from __future__ import annotations

from pathlib import Path

from alerting.levels import Levels
from alerting.state import AlertDB
from tests.alerting.helpers import T0, batch, engine, exc, states, step

CPU = {"name": "cpu_high", "type": "threshold", "metric": "system.cpu.usage_percent", "window": 30, "agg": "avg",
       "warning": 80, "critical": 95, "recovery": 70, "for": 20}


def cpu(host: str, ts: float, v: float):
    return batch(host, ts, [("system.cpu.usage_percent", v, {"cpu": "total"})])


def test_levels_hysteresis_classify() -> None:
    lv = Levels.build(">", {"warning": 80, "critical": 95}, 70)
    assert lv.classify(79) == (None, None)
    assert lv.classify(81) == ("warning", 80)
    assert lv.classify(96) == ("critical", 95)
    # held warning: stays until the value goes below the recovery threshold 70
    assert lv.classify(75, "warning") == ("warning", 80)
    assert lv.classify(69, "warning") == (None, None)
    # held critical drops to warning below 85 (95 - margin 10), not before
    assert lv.classify(90, "critical") == ("critical", 95)
    assert lv.classify(84, "critical") == ("warning", 80)
    down = Levels.build("<", {"warning": 14, "critical": 3}, 15)
    assert down.classify(10) == ("warning", 14)
    assert down.classify(14.5, "warning") == ("warning", 14)
    assert down.classify(16, "warning") == (None, None)


def test_threshold_lifecycle_with_for(tmp_path: Path) -> None:
    e = engine(tmp_path, CPU)
    step(e, T0, cpu("web1", T0, 50))
    assert e.alerts == {}
    step(e, T0 + 10, cpu("web1", T0 + 10, 99), cpu("web1", T0 + 9, 99))
    # avg of 50, 99, 99 = 82.7 → warning, pending because of for: 20s
    assert states(e) == {"cpu_high:web1:": "pending/warning"}
    out = step(e, T0 + 20, cpu("web1", T0 + 20, 99))
    assert states(e) == {"cpu_high:web1:": "pending/warning"}
    assert out == []
    out = step(e, T0 + 31, cpu("web1", T0 + 31, 99))
    assert states(e) == {"cpu_high:web1:": "firing/critical"}
    a = out[0]
    assert a.labels == {"alertname": "cpu_high", "cpu": "total", "host": "web1", "severity": "critical"}
    assert a.firing_since == T0 + 31 and a.active_since == T0 + 10
    assert a.value == 99 and a.threshold == 95
    fp = a.fingerprint
    # the value drops to 75: still above recovery 70 → held as warning (not resolved)
    for t in range(41, 80, 10):
        step(e, T0 + t, cpu("web1", T0 + t, 75))
    assert states(e) == {"cpu_high:web1:": "firing/warning"}
    out = step(e, T0 + 90, cpu("web1", T0 + 90, 10), cpu("web1", T0 + 85, 10), cpu("web1", T0 + 80, 10))
    assert states(e) == {"cpu_high:web1:": "resolved/warning"}
    assert [x.state for x in out] == ["resolved"] and out[0].fingerprint == fp


def test_pending_that_clears_is_dropped_without_trace(tmp_path: Path) -> None:
    e = engine(tmp_path, CPU)
    step(e, T0, cpu("web1", T0, 99))
    assert states(e) == {"cpu_high:web1:": "pending/critical"}
    out = step(e, T0 + 40, cpu("web1", T0 + 40, 10))
    assert e.alerts == {} and out == []


def test_flapping_value_with_hysteresis_fires_once(tmp_path: Path) -> None:
    rule = {"name": "load", "type": "threshold", "metric": "system.load.avg1", "window": 5, "agg": "last", "warning": 10, "recovery": 8}
    e = engine(tmp_path, rule, interval=1)
    transitions = []
    prev = "start"
    for i in range(60):
        v = 10.5 if i % 2 else 9.5  # flapping around the threshold 10, never below the recovery 8
        step(e, T0 + i, batch("db1", T0 + i, [("system.load.avg1", v, {})]))
        st = next(iter(e.alerts.values())).state if e.alerts else None
        if st != prev:
            transitions.append(st)
            prev = st
    assert transitions == [None, "firing"]
    # without hysteresis the same data flaps: count the firing episodes
    (tmp_path / "b").mkdir()
    e2 = engine(tmp_path / "b", {**rule, "name": "load2", "recovery": None}, interval=1)
    episodes = 0
    prev = None
    for i in range(60):
        v = 10.5 if i % 2 else 9.5
        step(e2, T0 + i, batch("db1", T0 + i, [("system.load.avg1", v, {})]))
        st = next(iter(e2.alerts.values())).state if e2.alerts else None
        if st == "firing" and prev != "firing":
            episodes += 1
        prev = st
    assert episodes == 30


def test_host_down_and_state_across_restart(tmp_path: Path) -> None:
    rule = {"name": "host_down", "type": "host_down", "after": 60}
    e = engine(tmp_path, rule)
    step(e, T0, batch("web1", T0), batch("web2", T0))
    assert e.alerts == {}
    step(e, T0 + 50, batch("web2", T0 + 50))
    assert e.alerts == {}
    out = step(e, T0 + 70, batch("web2", T0 + 70))
    assert states(e) == {"host_down:web1:": "firing/critical"}
    firing_since = out[0].firing_since
    e.db.close()
    # a new engine over the same database: the firing alert and the hosts' last-seen times are remembered
    e2 = engine(tmp_path, rule, db=AlertDB(str(tmp_path / "alerting.db")))
    e2.load_state()
    assert states(e2) == {"host_down:web1:": "firing/critical"}
    out = step(e2, T0 + 80, batch("web2", T0 + 80))
    assert [(a.state, a.firing_since) for a in out] == [("firing", firing_since)]
    out = step(e2, T0 + 90, batch("web1", T0 + 90), batch("web2", T0 + 90))
    assert [a.state for a in out] == ["resolved"]


def test_exceptions_rule_on_arrival_and_window(tmp_path: Path) -> None:
    rule = {"name": "pay_burst", "type": "exceptions", "match": {"module": "payment"}, "window": 60, "warning": 5, "critical": 50}
    e = engine(tmp_path, rule)
    step(e, T0, batch("app1", T0, events=[exc(T0, count=1) for _ in range(5)]))
    assert e.alerts == {}  # 5 is not more than 5
    assert e.ingest(batch("app1", T0 + 1, events=[exc(T0 + 1), exc(T0 + 1, module="order")])) is True
    out = e.evaluate(T0 + 1, event_rules_only=True)
    assert [(a.state, a.labels["module"], a.value) for a in out] == [("firing", "payment", 6.0)]
    # order exceptions never match
    step(e, T0 + 2, batch("app1", T0 + 2, events=[exc(T0 + 2, module="order", count=100)]))
    assert states(e) == {"pay_burst::payment": "firing/warning"}
    out = step(e, T0 + 62)
    assert [a.state for a in out] == ["resolved"]


def test_probe_rule_n_failures_in_a_row(tmp_path: Path) -> None:
    rule = {"name": "probe_down", "type": "probe", "failures": 3, "recover_after": 2}
    e = engine(tmp_path, rule)

    def up(t: float, v: float):
        return batch("mon1", t, [("http.up", v, {"target": "https://img.example", "result": "success" if v else "bad_status"})])

    for i, v in enumerate([1, 0, 0]):
        step(e, T0 + i * 10, up(T0 + i * 10, v))
    assert e.alerts == {}
    out = step(e, T0 + 30, up(T0 + 30, 0))
    assert [(a.state, a.labels["probe"], a.labels["target"], a.extra["result"]) for a in out] == [
        ("firing", "http", "https://img.example", "bad_status")]
    step(e, T0 + 40, up(T0 + 40, 1))
    assert states(e) == {"probe_down:mon1:": "firing/critical"}  # one success is not enough
    out = step(e, T0 + 50, up(T0 + 50, 1))
    assert [a.state for a in out] == ["resolved"]


def test_ping_loss_and_absent_and_ratio(tmp_path: Path) -> None:
    e = engine(
        tmp_path,
        {"name": "loss", "type": "threshold", "metric": "ping.loss_ratio", "window": 30, "agg": "avg", "warning": 0.2},
        {"name": "gone", "type": "absent", "metric": "app.queue.depth", "after": 30},
        {"name": "err", "type": "error_rate", "numerator": {"metric": "app.request.errors"}, "denominator": {"metric": "app.request.count"},
         "by": ["module"], "window": 60, "warning": 5, "min_denominator": 10},
    )
    step(e, T0, batch("gw", T0, [("ping.loss_ratio", 0.5, {"target": "10.0.0.1"}), ("ping.loss_ratio", 0.0, {"target": "10.0.0.2"}),
                                  ("app.queue.depth", 3, {}), ("app.request.errors", 2, {"module": "order"}),
                                  ("app.request.count", 100, {"module": "order"}), ("app.request.errors", 9, {"module": "payment"}),
                                  ("app.request.count", 100, {"module": "payment"})]))
    got = {(a.rule, a.labels.get("target") or a.labels.get("module", "")) for a in e.alerts.values()}
    assert got == {("loss", "10.0.0.1"), ("err", "payment")}
    step(e, T0 + 40, batch("gw", T0 + 40, [("ping.loss_ratio", 0.0, {"target": "10.0.0.1"})]))
    # the 30 s window no longer holds the lossy point; the 60 s error-rate window still does
    assert {a.rule: a.state for a in e.alerts.values()} == {"gone": "firing", "loss": "resolved", "err": "firing"}


def test_prediction_disk_full(tmp_path: Path) -> None:
    rule = {"name": "disk_full", "type": "prediction", "metric": "system.filesystem.used_percent", "window": "6h", "warning": "24h",
            "critical": "4h", "min_points": 10, "min_span": "1h"}
    e = engine(tmp_path, rule)
    bs = []
    for i in range(13):  # +1 % every 10 minutes from 50 %: 100 % in 50 × 10 min from the last point
        t = T0 + i * 600
        bs.append(batch("db1", t, [("system.filesystem.used_percent", 50 + i, {"mountpoint": "/var"}),
                                   ("system.filesystem.used_percent", 40, {"mountpoint": "/"})]))
    out = step(e, T0 + 12 * 600, *bs)
    assert [(a.labels["mountpoint"], a.severity) for a in out] == [("/var", "warning")]
    assert abs(out[0].value - 38 * 600) < 60  # 38 % left at 1 %/10 min


def test_new_exception_in_critical_module(tmp_path: Path) -> None:
    rule = {"name": "new_exc", "type": "new_exception", "match": {"module": "~payment|order"}, "resolve_after": 60}
    e = engine(tmp_path, rule)
    out = step(e, T0, batch("app", T0, events=[exc(T0, fp="a"), exc(T0, module="search", fp="b")]))
    assert [(a.labels["fingerprint"], a.state) for a in out] == [("a", "firing")]
    out = step(e, T0 + 10, batch("app", T0 + 10, events=[exc(T0 + 10, fp="a")]))
    assert len([a for a in out if a.state == "firing"]) == 1  # the same group is not new again
    out = step(e, T0 + 61)
    assert [a.state for a in out] == ["resolved"]


def test_rule_evaluation_survives_a_bad_rule(tmp_path: Path) -> None:
    e = engine(tmp_path, CPU)

    def boom(ctx):  # noqa: ANN001
        raise RuntimeError("bug")

    e.rules[0].evaluate = boom  # type: ignore[method-assign]
    assert step(e, T0, cpu("web1", T0, 99)) == []
