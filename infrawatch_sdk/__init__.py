"""infrawatch_sdk: report exceptions and API/SQL timings from Python applications to the local infrawatch agent.

Stdlib only, safe to import anywhere, and it never raises into the application nor blocks it:
events go into a bounded in-memory queue (drops counted) that a daemon thread ships to the agent.

    import infrawatch_sdk as iw
    iw.init(service="shop", modules={"payment": {"url_prefixes": ["/pay"], "packages": ["shop.payment"]}})
    app.wsgi_app = iw.WSGIMiddleware(app.wsgi_app)      # or iw.ASGIMiddleware(asgi_app)
    conn = iw.wrap_dbapi(psycopg.connect(dsn), db="postgresql")

Usage for each framework, what is sent and the guarantees: docs/sdk.md.
"""

from __future__ import annotations

from infrawatch_sdk._client import (
    Client,
    capture_exception,
    flush,
    get_client,
    init,
    install_excepthook,
    module,
    record_request,
    record_sql,
    span,
    stats,
)
from infrawatch_sdk.dbapi import wrap_dbapi
from infrawatch_sdk.logging import LoggingHandler
from infrawatch_sdk.web import ASGIMiddleware, WSGIMiddleware, aiohttp_middleware, instrument_flask

__all__ = [
    "ASGIMiddleware",
    "Client",
    "LoggingHandler",
    "WSGIMiddleware",
    "aiohttp_middleware",
    "capture_exception",
    "flush",
    "get_client",
    "init",
    "install_excepthook",
    "instrument_flask",
    "instrument_sqlalchemy",
    "module",
    "record_request",
    "record_sql",
    "span",
    "stats",
    "wrap_dbapi",
]


def instrument_sqlalchemy(engine, db: str | None = None, client: Client | None = None) -> None:  # noqa: ANN001
    """Time every statement of a SQLAlchemy engine (engine events); imported lazily."""
    from infrawatch_sdk.sqlalchemy import instrument

    instrument(engine, db=db, client=client)
