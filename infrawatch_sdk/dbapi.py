"""DB-API 2 wrapper: times every execute/executemany of a connection's cursors (statement fingerprinted by the agent)."""

from __future__ import annotations

import time
from typing import Any

from infrawatch_sdk import _client as C


class _Cursor:
    __slots__ = ("_cur", "_db")

    def __init__(self, cur: Any, db: str | None) -> None:
        self._cur = cur
        self._db = db

    def execute(self, operation: Any, *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        err = False
        try:
            return self._cur.execute(operation, *args, **kw)
        except Exception:
            err = True
            raise
        finally:
            c = C._client
            if c is not None:
                c._put(("sql", time.time(), time.perf_counter() - t0, C.current_module.get(),
                        operation if isinstance(operation, str) else str(operation), self._db, err))

    def executemany(self, operation: Any, seq: Any, *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        err = False
        try:
            return self._cur.executemany(operation, seq, *args, **kw)
        except Exception:
            err = True
            raise
        finally:
            c = C._client
            if c is not None:
                c._put(("sql", time.time(), time.perf_counter() - t0, C.current_module.get(),
                        operation if isinstance(operation, str) else str(operation), self._db, err))

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
    __slots__ = ("_conn", "_db")

    def __init__(self, conn: Any, db: str | None) -> None:
        self._conn = conn
        self._db = db

    def cursor(self, *a: Any, **kw: Any) -> _Cursor:
        return _Cursor(self._conn.cursor(*a, **kw), self._db)

    def execute(self, operation: Any, *args: Any, **kw: Any) -> Any:
        """psycopg 3 / sqlite3 style connection.execute()."""
        t0 = time.perf_counter()
        err = False
        try:
            return self._conn.execute(operation, *args, **kw)
        except Exception:
            err = True
            raise
        finally:
            c = C._client
            if c is not None:
                c._put(("sql", time.time(), time.perf_counter() - t0, C.current_module.get(),
                        operation if isinstance(operation, str) else str(operation), self._db, err))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __enter__(self) -> "_Connection":
        self._conn.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._conn.__exit__(*exc)


def wrap_dbapi(conn: Any, db: str | None = None) -> Any:
    """Return a proxy of a DB-API 2 connection whose cursors time every statement."""
    return _Connection(conn, db)
