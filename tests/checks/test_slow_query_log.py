"""slow_query_log check against slow logs written by a real MariaDB and a real PostgreSQL (loopback servers)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from checks import build_check
from checks.slow_query_log import SlowLogGrouper, parse_entry
from tests.apps.helpers import CollectorExt, LoopThread


def _check(tmp: Path, paths: list[str], **kw: Any):  # noqa: ANN202
    sd = tmp / "state"
    sd.mkdir(exist_ok=True)
    return build_check({"type": "slow_query_log", "paths": paths, **kw}, state_dir=str(sd))


async def _drain(check: Any) -> list[Any]:
    return (await check.run()) + (await check.run())


def _perf(readings: list[Any]) -> dict[str, Any]:
    return {r.data["statement"]: r for r in readings if getattr(r, "kind", None) == "app.perf"}


async def test_mariadb_slow_log(mariadb_server: dict[str, Any], tmp_path: Path) -> None:
    import pymysql

    from checks.model import Batch, new_batch_id

    d = Path(tempfile.mkdtemp(prefix="iw-slow-"))
    os.chmod(d, 0o777)
    slow = d / "slow.log"
    conn = pymysql.connect(unix_socket=mariadb_server["socket"], user="root", password="", autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute("SET GLOBAL slow_query_log_file = %s", (str(slow),))
        cur.execute("SET GLOBAL slow_query_log = 1")
        cur.execute("SET SESSION slow_query_log = 1")  # session-scoped in MariaDB 10.11 (log_slow_query)
        cur.execute("SET SESSION long_query_time = 0")
        check = _check(tmp_path, [str(slow)], from_beginning=True, service="shop", module="order")
        try:
            cur.execute("CREATE TABLE IF NOT EXISTS probe.orders_slow (id INT PRIMARY KEY, note TEXT)")
            for i in range(12):
                cur.execute(f"SELECT id, note FROM probe.orders_slow WHERE id = {i} AND note = 'secret-{i}'")
            for i in range(3):
                cur.execute(f"SELECT SLEEP(0.0{i + 1})")
            cur.execute("SELECT id\n  FROM probe.orders_slow\n  WHERE id IN (1, 2, 3)")
            got = _perf(await _drain(check))
        finally:
            await check.close()
    finally:
        try:
            conn.cursor().execute("SET GLOBAL slow_query_log = 0")
        finally:
            conn.close()
    sel = got["select id, note from probe.orders_slow where id = ? and note = ?"]
    assert sel.data["count"] == 12 and sel.tags["db"] == "mysql" and sel.tags["module"] == "order"
    assert "secret" not in str(sel.data)
    sleep = got["select sleep(?)"]
    assert sleep.data["count"] == 3 and 0.03 <= sleep.data["max"] < 1.0
    assert sleep.data["slowest"][0]["duration"] == sleep.data["max"]
    assert "select id from probe.orders_slow where id in (?+)" in got
    # through the collector extension: the same /api/v1/perf/sql as application timings
    lt = LoopThread()
    collector = CollectorExt(lt, tmp_path)
    try:
        collector.ingest(Batch(new_batch_id(), "db-1", 1.8e9, [], list(got.values())))
        items = {i["statement"]: i for i in collector.get("/api/v1/perf/sql")[1]["items"]}
    finally:
        collector.close()
        lt.close()
    assert items["select sleep(?)"]["count"] == 3 and items["select sleep(?)"]["p95_seconds"] >= 0.02


async def test_postgresql_log_min_duration_statement(postgres_server: dict[str, Any], tmp_path: Path) -> None:
    import psycopg

    log_path = Path(postgres_server["socket_dir"]) / "postgres.log"
    check = _check(tmp_path, [str(log_path)])  # from the end: only what is logged from now on
    await check.run()
    with psycopg.connect(postgres_server["dsn"], autocommit=True) as conn:
        conn.execute("SET log_min_duration_statement = 0")
        for i in range(5):
            conn.execute(f"SELECT pg_sleep(0.00{i}), 'tag-{i}'")
        conn.execute("SELECT 1\n  + 2\n  + 3")
        conn.execute("SELECT %s::int + 1", (41,))  # extended protocol: execute <unnamed>, DETAIL parameters
    try:
        got = _perf(await _drain(check))
    finally:
        await check.close()
    assert got["select pg_sleep(?), ?"].data["count"] == 5
    assert got["select pg_sleep(?), ?"].tags["db"] == "postgresql"
    assert "select ? + ? + ?" in got
    # extended protocol: only the execute phase counts (parse/bind are not separate queries)
    from checks.normalize import sql_normalize

    assert got[sql_normalize("SELECT $1::int + 1")].data["count"] == 1
    text = str([e.data for e in got.values()])
    assert "tag-" not in text, text


def test_parse_entries_units() -> None:
    my = ("# Time: 261204 10:00:00\n# User@Host: root[root] @ localhost []\n# Thread_id: 8  Schema: probe  QC_hit: No\n"
          "# Query_time: 0.500000  Lock_time: 0.000100  Rows_sent: 1  Rows_examined: 10\nuse probe;\nSET timestamp=1796378400;\n"
          "SELECT * FROM t WHERE a = 1;")
    q = parse_entry(my)
    assert q is not None and q.duration == 0.5 and q.ts == 1796378400 and q.schema == "probe" and q.rows_examined == 10
    assert q.statement == "SELECT * FROM t WHERE a = 1;"
    pg = "2026-12-04 10:00:00.123 UTC [77] LOG:  duration: 12.500 ms  statement: SELECT 1\n\tFROM x"
    q = parse_entry(pg)
    assert q is not None and q.duration == pytest.approx(0.0125) and q.statement == "SELECT 1\nFROM x"
    g = SlowLogGrouper()
    lines = my.splitlines() + ["# User@Host: a[a] @ h []", "# Query_time: 1.0  Lock_time: 0.0", "SELECT 2;"]
    recs = [r for ln in lines if (r := g.feed(ln))]
    assert recs == [my] and parse_entry(g.take() or "").statement == "SELECT 2;"  # type: ignore[union-attr]
