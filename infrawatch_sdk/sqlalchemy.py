"""SQLAlchemy engine events: time every statement executed through an engine."""

from __future__ import annotations

import time
from typing import Any

from infrawatch_sdk import _client as C

_KEY = "_infrawatch_t0"


def instrument(engine: Any, db: str | None = None) -> None:
    from sqlalchemy import event

    dbname = db or getattr(getattr(engine, "dialect", None), "name", None)

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        conn.info.setdefault(_KEY, []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        stack = conn.info.get(_KEY)
        if stack:
            t0 = stack.pop()
            c = C._client
            if c is not None:
                c._put(("sql", time.time(), time.perf_counter() - t0, C.current_module.get(), statement, dbname, False))

    @event.listens_for(engine, "handle_error")
    def _error(ctx: Any) -> None:
        conn = ctx.connection
        stack = conn.info.get(_KEY) if conn is not None else None
        if stack:
            t0 = stack.pop()
            c = C._client
            if c is not None:
                c._put(("sql", time.time(), time.perf_counter() - t0, C.current_module.get(), ctx.statement or "", dbname, True))
