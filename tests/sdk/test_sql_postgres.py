"""Must-show: real PostgreSQL queries through psycopg (wrap_dbapi) and SQLAlchemy (engine events) are
timed; literal-only differences share one fingerprint (the agent's checks.normalize); no literal value
ever appears in what the SDK sends."""

from __future__ import annotations

import time
from typing import Any

import pytest

import infrawatch_sdk as iw
from checks.normalize import sql_fingerprint
from tests.sdk.helpers import Receiver

SECRETS = ("alice-secret", "4242", "99.95", "bob-secret", "31337")


def fps(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        out.setdefault(sql_fingerprint(e["statement"])[0], []).append(e)
    return out


def assert_no_literals(receiver: Receiver) -> None:
    body = b"".join(receiver.raw)
    assert body
    for s in SECRETS:
        assert s.encode() not in body, s


def test_psycopg_wrap_dbapi(client: iw.Client, receiver: Receiver, postgres_server: dict[str, Any]) -> None:
    import psycopg
    from psycopg import sql

    conn = iw.wrap_dbapi(psycopg.connect(postgres_server["dsn"], autocommit=True), db="postgresql")
    with conn:
        with conn.cursor() as cur:
            cur.execute("drop table if exists sdk_orders")
            cur.execute("create table sdk_orders (id int primary key, owner text, total numeric)")
            cur.executemany("insert into sdk_orders values (%s, %s, %s)", [(i, f"o{i}", i * 1.5) for i in range(1, 20)])
        with iw.module("order"):
            with conn.cursor() as cur:
                for oid in (1, 2, 3, 4242):
                    cur.execute(f"select total from sdk_orders where id = {oid}")  # literal-only differences
                cur.execute("select total from sdk_orders where owner = 'alice-secret' and total > 99.95")
                cur.execute("select total from sdk_orders where owner = 'bob-secret' and total > 1")
                assert cur.execute("select owner from sdk_orders where id = %s", (3,)).fetchone() == ("o3",)
                cur.execute(sql.SQL("select {} from sdk_orders where id = {}").format(sql.Identifier("owner"), sql.Literal(31337)))
                t0 = time.perf_counter()
                cur.execute("select pg_sleep(0.05)")
                wall = time.perf_counter() - t0
                with pytest.raises(psycopg.errors.UndefinedTable):
                    cur.execute("select * from no_such_table where id = 4242")
        conn.execute("select count(*) from sdk_orders where id in (1, 2, 3)")
    assert iw.flush(10)

    sql_ev = receiver.of("sql")
    assert len(sql_ev) == 14 and all(e["db"] == "postgresql" and e["duration"] > 0 for e in sql_ev)
    groups = fps(sql_ev)
    by_id = groups[sql_fingerprint("select total from sdk_orders where id = 0")[0]]
    assert len(by_id) == 4 and {e["statement"] for e in by_id} == {"select total from sdk_orders where id = ?"}
    assert all(e["module"] == "order" for e in by_id)
    by_owner = groups[sql_fingerprint("select total from sdk_orders where owner = '' and total > 0")[0]]
    assert len(by_owner) == 2
    assert any(e["statement"] == 'select "owner" from sdk_orders where id = ?' for e in sql_ev)  # psycopg sql.Composed
    (sleep,) = [e for e in sql_ev if "pg_sleep" in e["statement"]]
    assert 0.05 <= sleep["duration"] <= wall
    (bad,) = [e for e in sql_ev if e["error"]]
    assert bad["statement"] == "select * from no_such_table where id = ?" and bad["module"] == "order"
    assert [e.get("module") for e in sql_ev][-1] is None  # outside the module block
    assert_no_literals(receiver)


def test_sqlalchemy_engine_events(client: iw.Client, receiver: Receiver, postgres_server: dict[str, Any]) -> None:
    import sqlalchemy as sa

    pg = postgres_server
    engine = sa.create_engine(f"postgresql+psycopg://{pg['user']}:{pg['password']}@{pg['host']}:{pg['port']}/{pg['dbname']}")
    iw.instrument_sqlalchemy(engine)
    meta = sa.MetaData()
    orders = sa.Table("sdk_sa_orders", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("owner", sa.Text))
    try:
        with engine.begin() as conn:
            meta.drop_all(conn)
            meta.create_all(conn)
            conn.execute(orders.insert(), [{"id": i, "owner": f"o{i}"} for i in range(1, 10)])
        assert iw.flush(10)
        receiver.events.clear()
        receiver.raw.clear()
        with iw.module("payment"), engine.connect() as conn:
            for oid in (1, 2, 4242):
                conn.execute(sa.text(f"select owner from sdk_sa_orders where id = {oid}")).fetchall()
            assert conn.execute(sa.select(orders.c.owner).where(orders.c.id == 31337)).fetchall() == []
            assert conn.execute(sa.select(orders.c.owner).where(orders.c.id == 3)).scalar() == "o3"
            conn.execute(sa.text("select owner from sdk_sa_orders where owner = 'alice-secret'")).fetchall()
            with pytest.raises(sa.exc.ProgrammingError):
                conn.execute(sa.text("select nope from sdk_sa_orders where id = 99.95"))
        assert iw.flush(10)
    finally:
        engine.dispose()

    sql_ev = [e for e in receiver.of("sql") if "sdk_sa_orders" in e["statement"]]
    assert len(sql_ev) == 7 and all(e["db"] == "postgresql" and e["module"] == "payment" for e in sql_ev)
    groups = fps(sql_ev)
    assert len(groups[sql_fingerprint("select owner from sdk_sa_orders where id = 7")[0]]) == 3
    bound = [e for e in sql_ev if "%(id_1)s" in e["statement"]]
    assert len(bound) == 2 and len({sql_fingerprint(e["statement"]) for e in bound}) == 1
    (bad,) = [e for e in sql_ev if e["error"]]
    assert bad["statement"] == "select nope from sdk_sa_orders where id = ?"
    assert all(e["duration"] > 0 for e in sql_ev)
    assert_no_literals(receiver)
