"""The contract between the collector core and its extensions (alerting, application exceptions).

An extension is a class registered in ``EXTENSIONS`` under the name of its top-level section in
the collector config (``alerting:``, ``exceptions:``). The collector core:

1. at config load calls ``cls.validate(raw_section, path)`` (raise ``checks.config.ConfigError``
   naming the path; the returned object is passed to ``__init__``). A section may be absent: an
   extension with ``ALWAYS_ON = True`` is then built from ``validate({}, name)``.
2. builds ``ext = cls(config, ctx)`` with an :class:`ExtensionContext`;
3. calls ``ext.migrate(conn)`` once with a ``sqlite3.Connection`` to the store database
   (create your tables with ``IF NOT EXISTS``; the core commits afterwards);
4. for every accepted batch calls ``ext.in_transaction(conn, batch)`` inside the ingest
   transaction, on the store's writer thread (keep it fast: no network, no sleeping; rows written
   there commit or roll back with the batch, so a batch id is never half-applied);
5. after the commit (and before or after the HTTP answer, no ordering promised) awaits
   ``ext.after_commit(batch)`` on the event loop (must not block);
6. adds ``ext.routes()`` (a list of ``aiohttp.web.RouteDef``) to the app. Read routes are
   protected by the collector's read-token middleware; a route handler may call
   ``ctx.require_write(request)`` for mutating endpoints;
7. awaits ``ext.start(app)`` at app start-up and ``ext.stop()`` at clean-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from checks.model import Batch, Sample

#: section name → "module:Class"; imported lazily.
EXTENSIONS: dict[str, str] = {
    "alerting": "alerting.service:AlertingExtension",
    "exceptions": "collector.exceptions:ExceptionsExtension",
    "web": "collector.web:WebExtension",
}


class StoreReader(Protocol):
    """What extensions may read from the embedded store (thread-safe; opens its own reader)."""

    path: str

    def query(
        self, metric: str, tags: dict[str, str], start: float, end: float, step: float | None, agg: str | None,
        host: str | None = None,
    ) -> list[dict[str, Any]]:
        """[{"metric", "host", "tags": {...}, "points": [[ts, value], ...]}, ...]"""
        ...

    def hosts(self) -> list[dict[str, Any]]:
        """[{"host", "last_seen", "status", ...}, ...]"""
        ...

    def events(self, kind: str | None, start: float, end: float, host: str | None, limit: int) -> list[dict[str, Any]]:
        """[{"kind", "ts", "host", "message", "tags", "data"}, ...] newest first."""
        ...


@dataclass
class ExtensionContext:
    """Handed to every extension."""

    collector_config: Any
    data_dir: Path
    store: StoreReader
    #: record one internal sample (goes to the store and every sink like an agent's sample)
    emit_metric: Callable[[str, float, dict[str, str]], None]
    #: record internal samples in bulk
    emit_samples: Callable[[list[Sample]], None]
    #: raise aiohttp HTTPUnauthorized/HTTPForbidden unless the request carries a write/admin token
    require_write: Callable[[Any], None]
    extra: dict[str, Any] = field(default_factory=dict)


class Extension(Protocol):
    name: str

    @classmethod
    def validate(cls, raw: Any, path: str) -> Any: ...

    def migrate(self, conn: Any) -> None: ...

    def in_transaction(self, conn: Any, batch: Batch) -> None: ...

    async def after_commit(self, batch: Batch) -> None: ...

    def routes(self) -> list[Any]: ...

    async def start(self, app: Any) -> None: ...

    async def stop(self) -> None: ...


def load_extension_class(name: str) -> type:
    import importlib

    mod, _, cls = EXTENSIONS[name].partition(":")
    return getattr(importlib.import_module(mod), cls)
