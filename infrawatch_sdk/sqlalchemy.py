"""SQLAlchemy engine events: time every statement executed through an engine (sync or async)."""

from __future__ import annotations

import time
from typing import Any

from infrawatch_sdk import _client as C

_ATTR = "_infrawatch_t0"


def instrument(engine: Any, db: str | None = None, client: C.Client | None = None) -> None:
    """Listen on `engine` (an Engine, an AsyncEngine, or the Engine class for every engine)."""
    from sqlalchemy import event

    target = getattr(engine, "sync_engine", engine)
    dbname = db or getattr(getattr(target, "dialect", None), "name", None)
    perf, now, cur_module = time.perf_counter, time.time, C.current_module

    def _before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if context is not None:
            setattr(context, _ATTR, perf())

    def _after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        t0 = getattr(context, _ATTR, None)
        c = client or C._client
        if t0 is not None and c is not None:
            c._put(("sql", now(), perf() - t0, cur_module.get(), statement, dbname or conn.dialect.name, False))

    def _error(ctx: Any) -> None:
        try:
            t0 = getattr(ctx.execution_context, _ATTR, None)
            c = client or C._client
            if t0 is not None and c is not None:
                c._put(("sql", now(), perf() - t0, cur_module.get(), ctx.statement or "", dbname or ctx.dialect.name, True))
        except Exception:  # noqa: BLE001
            pass

    event.listen(target, "before_cursor_execute", _before)
    event.listen(target, "after_cursor_execute", _after)
    event.listen(target, "handle_error", _error)
