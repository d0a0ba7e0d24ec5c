"""DB-API 2 wrapper: times every execute/executemany of a connection (and its cursors); literals are
redacted on the sender thread before anything leaves the process, the agent fingerprints the rest."""

from __future__ import annotations

import time
from typing import Any

from infrawatch_sdk import _client as C

_perf = time.perf_counter
_now = time.time
_cur_module = C.current_module


def _text(operation: Any, conn: Any) -> str:
    """Statement text of a non-str query: bytes, psycopg sql.Composable, anything with __str__."""
    if isinstance(operation, bytes):
        return operation.decode("utf-8", "replace")
    as_string = getattr(operation, "as_string", None)
    if as_string is not None:
        for ctx in (conn, None):
            try:
                return str(as_string(ctx))
            except Exception:  # noqa: BLE001, PERF203
                continue
    return C._safe_str(operation, 16384)


class _Cursor:
    __slots__ = ("_cur", "_db", "_conn", "_client")

    def __init__(self, cur: Any, db: str | None, conn: Any, client: C.Client | None) -> None:
        self._cur = cur
        self._db = db
        self._conn = conn
        self._client = client

    def _record(self, t0: float, operation: Any, err: bool) -> None:
        c = self._client or C._client
        if c is not None:
            if type(operation) is not str:
                operation = _text(operation, self._conn)
            c._put(("sql", _now(), _perf() - t0, _cur_module.get(), operation, self._db, err))

    def execute(self, operation: Any, *args: Any, **kw: Any) -> Any:
        t0 = _perf()
        try:
            r = self._cur.execute(operation, *args, **kw)
        except BaseException:
            self._record(t0, operation, True)
            raise
        self._record(t0, operation, False)
        return self if r is self._cur else r

    def executemany(self, operation: Any, seq: Any, *args: Any, **kw: Any) -> Any:
        t0 = _perf()
        try:
            r = self._cur.executemany(operation, seq, *args, **kw)
        except BaseException:
            self._record(t0, operation, True)
            raise
        self._record(t0, operation, False)
        return self if r is self._cur else r

    def callproc(self, procname: str, *args: Any) -> Any:
        t0 = _perf()
        try:
            r = self._cur.callproc(procname, *args)
        except BaseException:
            self._record(t0, f"CALL {procname}", True)
            raise
        self._record(t0, f"CALL {procname}", False)
        return r

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)

    def __iter__(self) -> Any:
        return iter(self._cur)

    def __enter__(self) -> "_Cursor":
        self._cur.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._cur.__exit__(*exc)


class _Connection:
    __slots__ = ("_conn", "_db", "_client")

    def __init__(self, conn: Any, db: str | None, client: C.Client | None) -> None:
        self._conn = conn
        self._db = db
        self._client = client

    def cursor(self, *a: Any, **kw: Any) -> _Cursor:
        return _Cursor(self._conn.cursor(*a, **kw), self._db, self._conn, self._client)

    def execute(self, operation: Any, *args: Any, **kw: Any) -> Any:
        """psycopg 3 / sqlite3 style connection.execute() (returns the driver's own cursor)."""
        t0 = _perf()
        err = True
        try:
            r = self._conn.execute(operation, *args, **kw)
            err = False
            return r
        finally:
            c = self._client or C._client
            if c is not None:
                if type(operation) is not str:
                    operation = _text(operation, self._conn)
                c._put(("sql", _now(), _perf() - t0, _cur_module.get(), operation, self._db, err))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __enter__(self) -> "_Connection":
        self._conn.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._conn.__exit__(*exc)


def wrap_dbapi(conn: Any, db: str | None = None, client: C.Client | None = None) -> Any:
    """Return a proxy of a DB-API 2 connection whose cursors time every statement (`db` names the
    database in reports: postgresql, mysql, ...). Everything else passes through to the connection."""
    return _Connection(conn, db, client)
