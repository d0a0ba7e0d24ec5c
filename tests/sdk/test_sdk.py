"""SDK units on real objects: DB-API timing on sqlite3, client-side SQL redaction (agrees with the agent's
fingerprints), exception storms merged exactly in bounded memory, the logging handler, spans and
explicit module tags, sanitised fields (one odd value never gets a whole batch rejected)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

import infrawatch_sdk as iw
from checks.normalize import sql_fingerprint, sql_normalize
from infrawatch_sdk._redact import redact_sql
from tests.sdk.helpers import Receiver

STATEMENTS = [
    "SELECT * FROM orders WHERE id = 42 AND owner = 'alice'",
    "select * from orders where id=7 and owner='bob'  -- note 99",
    "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')",
    "select $$dollar secret$$, x from t where y in (1, 2, 3) and z = %s and w = $1",
    "update accounts set balance = balance - 12.50 where card = E'4111\\'1111' /* c 7 */ and k = :key",
    'select "Col1", `c2` from t where a = -1.5e3 and h = 0x1F',
    "select name from t where id = ?",
]


@pytest.mark.parametrize("sql", STATEMENTS)
def test_redaction_keeps_the_agents_fingerprint(sql: str) -> None:
    red = redact_sql(sql)
    assert sql_normalize(red) == sql_normalize(sql) and sql_fingerprint(red) == sql_fingerprint(sql)
    for secret in ("42", "alice", "bob", "note", "dollar secret", "4111", "12.50", "1.5e3", "0x1F", "'x'"):
        assert secret not in red


def test_redaction_of_a_truncated_literal_drops_the_rest() -> None:
    assert redact_sql("select * from users where password = 'hunter2 and more") == "select * from users where password = ?"


def test_dbapi_wrapper_times_statements(client: iw.Client, receiver: Receiver) -> None:
    conn = iw.wrap_dbapi(sqlite3.connect(":memory:"), db="sqlite")
    cur = conn.cursor()
    cur.execute("create table t (id integer, name text)")
    cur.executemany("insert into t values (?, ?)", [(1, "a"), (2, "b")])
    assert cur.execute("select name from t where id = 1").fetchall() == [("a",)]
    with pytest.raises(sqlite3.OperationalError):
        cur.execute("select nope from t")
    assert conn.execute("select count(*) from t where name = 'secret-b'").fetchone() == (0,)
    with iw.module("order"):
        cur.execute("select 1")
    assert iw.flush(5)
    sql = receiver.of("sql")
    assert [e["statement"] for e in sql] == [
        "create table t (id integer, name text)", "insert into t values (?, ?)", "select name from t where id = ?",
        "select nope from t", "select count(*) from t where name = ?", "select ?"]
    assert [e["error"] for e in sql] == [False, False, False, True, False, False]
    assert all(e["duration"] >= 0 and e["db"] == "sqlite" for e in sql)
    assert [e.get("module") for e in sql] == [None] * 5 + ["order"]
    assert b"secret-b" not in b"".join(receiver.raw)


def test_exception_storm_counted_exactly_in_bounded_memory(receiver: Receiver) -> None:
    c = iw.Client(receiver.url, service="storm", queue_size=100, flush_interval=0.05)
    try:
        for i in range(20_000):
            try:
                raise KeyError(f"sku {i % 1}")
            except KeyError as e:
                c.capture_exception(e, module="order")
            assert len(c._q) <= 100
        assert c.flush(10)
    finally:
        c.close(0)
    excs = receiver.of("exception")
    assert sum(e["count"] for e in excs) == 20_000
    assert len(excs) < 50 and c.stats()["dropped"]["queue_full"] == 0


def test_logging_handler_module_by_logger_and_no_double_report(client: iw.Client, receiver: Receiver) -> None:
    lg = logging.getLogger("shop.payment.gateway")
    h = iw.LoggingHandler()
    lg.addHandler(h)
    try:
        try:
            {}["x"]
        except KeyError as e:
            iw.capture_exception(e, module="payment")  # explicit calls always count ...
            lg.exception("lookup failed")  # ... but an automatic hook does not report the same exception again
        lg.error("refund %s rejected", 42)
        lg.error("refund %s rejected", 43)
        lg.warning("not reported")
    finally:
        lg.removeHandler(h)
    assert iw.flush(5)
    excs = receiver.of("exception")
    got = sorted((e["exception"]["type"], e["module"], e["count"], e.get("logger")) for e in excs)
    assert got == [("KeyError", "payment", 1, None),
                   ("LogError", "payment", 1, "shop.payment.gateway"),
                   ("LogError", "payment", 1, "shop.payment.gateway")]
    log_err = [e for e in excs if e["exception"]["type"] == "LogError"][0]
    (frame,) = log_err["exception"]["frames"]
    assert frame["function"] == "test_logging_handler_module_by_logger_and_no_double_report" and frame["in_app"]


def test_logging_handler_explicit_module_tag(client: iw.Client, receiver: Receiver) -> None:
    lg = logging.getLogger("shop.misc")
    h = iw.LoggingHandler()
    lg.addHandler(h)
    try:
        lg.error("stock low", extra={"module_tag": "order"})
    finally:
        lg.removeHandler(h)
    assert iw.flush(5)
    assert [e["module"] for e in receiver.of("exception")] == ["order"]


def test_span_and_module_tag(client: iw.Client, receiver: Receiver) -> None:
    @iw.span("nightly-export", module="order")
    def export() -> int:
        return 1

    assert export() == 1
    with pytest.raises(ValueError):
        with iw.module("payment"):
            with iw.span("settle"):
                raise ValueError("settlement 12 failed")
    assert iw.flush(5)
    spans = {(e["endpoint"], e.get("module"), e["error"]) for e in receiver.of("span")}
    assert spans == {("nightly-export", "order", False), ("settle", "payment", True)}
    assert [(e["module"], e["count"]) for e in receiver.of("exception")] == [("payment", 1)]


def test_odd_values_are_sanitised_not_rejected(client: iw.Client, receiver: Receiver) -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("broken __str__")

    iw.record_request(0.01, "GET /" + "x" * 1000, "GET", 200, module="order")
    iw.record_request(float("nan"), "GET /nan", "GET", 200)  # invalid: dropped and counted
    iw.record_sql(0.001, "   ")  # empty statement: dropped and counted
    try:
        raise Weird()
    except Weird as e:
        iw.capture_exception(e, tags={"host": "spoofed", "region": 7, "Bad Key": "x"})  # type: ignore[dict-item]
    assert iw.flush(5)
    (req,) = receiver.of("request")
    assert len(req["endpoint"]) <= 256
    (ex,) = receiver.of("exception")
    assert ex["exception"]["message"] == "<unprintable>" and ex["tags"] == {"region": "7"}
    assert iw.stats()["dropped"]["invalid"] == 2


def test_explicit_captures_of_one_exception_object_all_count(client: iw.Client, receiver: Receiver) -> None:
    try:
        raise RuntimeError("gateway 7 down")
    except RuntimeError as e:
        for _ in range(1000):
            iw.capture_exception(e, module="payment")
    assert iw.flush(5)
    assert sum(e["count"] for e in receiver.of("exception")) == 1000


def test_redaction_agrees_with_the_agent_on_generated_statements() -> None:
    import random

    rnd = random.Random(7)
    atoms = ["select", "x", "t2", "a_b", "1", "42.5", "-3", "0x1f", "'s'", "'it''s'", "$1", "%s", ":k", "?", "(", ")",
             ",", "=", "--c 9\n", "/* 7 */", '"Q1"', "in", "where", "$$d$$", "1e5", ".", "E'z'", "a$2", "x1y", "t.c",
             "f(1)", "'4111 secret'", "'a\\'b'", "`bq`", '"a""b"', ".5", "$tag$x'y$tag$"]
    for _ in range(3000):
        sql = " ".join(rnd.choice(atoms) for _ in range(rnd.randint(1, 25)))
        red = redact_sql(sql)
        assert sql_normalize(red) == sql_normalize(sql), sql
        assert "secret" not in red and "42.5" not in red and "x'y" not in red


def test_excepthook_and_flush_at_exit(receiver: Receiver, tmp_path: Path) -> None:
    """A real process: an uncaught exception is reported and the queue flushed before the process exits."""
    import os
    import subprocess
    import sys

    script = tmp_path / "crash.py"
    script.write_text(
        "import infrawatch_sdk as iw\n"
        "iw.init(service='batch', flush_interval=60)\n"  # the sender sleeps: only the exit flush can deliver
        "iw.install_excepthook()\n"
        "iw.record_sql(0.002, \"update stock set qty = qty - 1 where sku = 'A-77'\")\n"
        "def settle():\n"
        "    raise RuntimeError('settlement 12 failed')\n"
        "settle()\n")
    env = dict(os.environ, INFRAWATCH_AGENT_URL=receiver.url, PYTHONPATH=os.getcwd())
    p = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "settlement 12 failed" in p.stderr  # the previous hook still printed it
    (ex,) = receiver.of("exception")
    assert ex["exception"]["type"] == "RuntimeError" and ex["exception"]["frames"][-1]["function"] == "settle"
    (sql,) = receiver.of("sql")
    assert sql["statement"] == "update stock set qty = qty - ? where sku = ?"
