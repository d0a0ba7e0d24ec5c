"""SQL probe against real PostgreSQL and MariaDB servers started by the test session on loopback."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from checks import build_check
from checks.config import ConfigError
from tests.checks.test_tcp import assert_declared, assert_result, by_name, example_checks, run_isolated
from tests.servers.net import free_port


async def run_once(raw: dict[str, Any]) -> list[Any]:
    c = build_check({"type": "sql", **raw})
    try:
        out = await c.run()
    finally:
        await c.close()
    assert_declared(c, out)
    return out


def _dsn(srv: dict[str, Any], scheme: str, *, password: str | None = None, host: str | None = None, port: int | None = None) -> str:
    db = srv.get("database") or srv.get("dbname")
    pw = srv["password"] if password is None else password
    return f"{scheme}://{srv['user']}:{pw}@{host or srv['host']}:{port or srv['port']}/{db}"


@pytest.fixture(params=["postgresql", "mysql"])
def db(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Each test runs against both a real PostgreSQL and a real MariaDB."""
    srv = request.getfixturevalue("postgres_server" if request.param == "postgresql" else "mariadb_server")
    return request.param, srv


async def test_connect_and_default_query(db: tuple[str, dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    scheme, srv = db
    caplog.set_level(logging.DEBUG)
    out = await run_once({"target": _dsn(srv, scheme, host="localhost"), "expect": "1"})
    assert_result(out, "sql", "success")
    s = by_name(out)
    assert s["sql.connect_seconds"].value > 0 and s["sql.query_seconds"].value > 0
    assert s["sql.value"].value == 1 and s["sql.rows"].value == 1
    label = s["sql.up"].tags["target"]
    assert label.startswith(f"{scheme}://{srv['user']}@localhost:{srv['port']}/")
    assert srv["password"] not in label and srv["password"] not in caplog.text


async def test_configured_query_and_expected_value(db: tuple[str, dict[str, Any]]) -> None:
    scheme, srv = db
    q = "SELECT COUNT(*) FROM (SELECT 1 AS x UNION ALL SELECT 2 UNION ALL SELECT 3) t"
    out = await run_once({"target": _dsn(srv, scheme), "query": q, "expect": "3"})
    assert_result(out, "sql", "success")
    assert by_name(out)["sql.value"].value == 3
    out = await run_once({"target": _dsn(srv, scheme), "query": "SELECT 'primary'", "expect": "replica"})
    ev = assert_result(out, "sql", "mismatch")
    assert ev.data["reason"] == "query returned 'primary', expected 'replica'"
    assert "sql.value" not in by_name(out)


async def test_wrong_password_is_auth_failed_and_never_logged(db: tuple[str, dict[str, Any]]) -> None:
    scheme, srv = db
    out = await run_once({"target": _dsn(srv, scheme, password="Wr0ng-Secret")})
    ev = assert_result(out, "sql", "auth_failed")
    text = ev.message + str(ev.data) + str(out)
    assert "Wr0ng-Secret" not in text and srv["password"] not in text
    assert ("password authentication failed" in text) or ("Access denied" in text)


async def test_bad_query_is_error(db: tuple[str, dict[str, Any]]) -> None:
    scheme, srv = db
    out = await run_once({"target": _dsn(srv, scheme), "query": "SELEC 1"})
    ev = assert_result(out, "sql", "error")
    assert ev.data["reason"].startswith("query failed") and "syntax" in ev.data["reason"].lower()
    assert "sql.connect_seconds" not in by_name(out)


async def test_server_down_is_connection_failed(db: tuple[str, dict[str, Any]]) -> None:
    scheme, srv = db
    out = await run_once({"target": _dsn(srv, scheme, port=free_port())})
    assert "refused" in assert_result(out, "sql", "connection_failed").data["reason"].lower()


async def test_slow_query_past_timeout(db: tuple[str, dict[str, Any]]) -> None:
    scheme, srv = db
    q = "SELECT pg_sleep(3)" if scheme == "postgresql" else "SELECT SLEEP(3)"
    out = await run_once({"target": _dsn(srv, scheme), "query": q, "timeout": 0.5})
    assert "no answer within 0.45s" in assert_result(out, "sql", "timeout").data["reason"]


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
async def test_silent_listener_is_timeout(scheme: str, silent_port: int) -> None:
    out = await run_once({"target": f"{scheme}://u:Secret-Pw@127.0.0.1:{silent_port}/db", "timeout": 0.5})
    ev = assert_result(out, "sql", "timeout")
    assert "while connecting" in ev.data["reason"] and "Secret-Pw" not in str(out)


def test_dns_failure_is_a_result() -> None:
    for dsn in ("postgresql://u:p@pg.invalid/db", "mysql://u:p@my.invalid/db"):
        out = run_isolated({"type": "sql", "target": dsn})
        assert next(r for r in out if r.get("name") == "sql.up")["tags"]["result"] == "dns_error"


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # make the optional libraries unimportable, as on a host installed without the extras
    monkeypatch.setitem(sys.modules, "pymysql", None)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ConfigError) as ei:
        build_check({"type": "sql", "target": "mysql://u:p@db/x"}, "checks[2]")
    assert "checks[2].target" in str(ei.value) and "pip install 'infrawatch[mysql]'" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        build_check({"type": "sql", "target": "postgresql://u:p@db/x"}, "checks[2]")
    assert "pip install 'infrawatch[postgres]'" in str(ei.value)


@pytest.mark.parametrize(
    "dsn, where",
    [
        ("oracle://u:p@h/db", "expected a DSN starting with postgresql://"),
        ("mysql://u:p@h:99999/db", "target: Port out of range"),
        ("mysql://u:p@h/db?sslmode=require", "unknown DSN parameter(s) sslmode"),
        ("postgresql://u:p@h/db?bogus=1", "invalid PostgreSQL DSN"),
    ],
)
def test_invalid_dsn_is_rejected_without_the_password(dsn: str, where: str) -> None:
    with pytest.raises(ConfigError) as ei:
        build_check({"type": "sql", "target": dsn}, "checks[0]")
    assert where in str(ei.value)
    assert ":p@" not in str(ei.value)


def test_config_repr_hides_the_dsn() -> None:
    c = build_check({"type": "sql", "target": "postgresql://u:hunter2@h/db"})
    assert "hunter2" not in repr(c.config)
    assert c.target_label() == "postgresql://u@h:5432/db"


def test_example_config_is_valid() -> None:
    assert len(example_checks("sql")) >= 2
