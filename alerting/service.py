"""The collector extension that runs alerting: rule engine thread, dispatcher, notifiers, API routes, SIGHUP reload."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Iterable

from alerting.acks import Acks
from alerting.config import AlertingConfig, collect_rules, parse_alerting_config
from alerting.dispatch import DBWorker, Dispatcher, Integration
from alerting.evaluate import Engine
from alerting.inhibit import Inhibitor, compile_rules
from alerting.notifiers import build_notifier
from alerting.notifiers.base import NotifierContext
from alerting.notifylog import DeliveryLog, NotificationLog
from alerting.render import Renderer
from alerting.routing import build_route
from alerting.rules import Rule, build_rule
from alerting.silences import Silences
from alerting.state import AlertDB, migrate
from checks.catalogue import MetricSpec, register_metrics
from checks.config import ConfigError
from checks.model import Batch, Event

log = logging.getLogger("alerting")

ALERT_METRICS = (
    MetricSpec("alerts.firing", "bool", "gauge", "1 while the alert fires, 0 once when it resolves", ("alertname", "severity", "host", "module", "target")),
    MetricSpec("alerts.active", "count", "gauge", "firing alerts per severity", ("severity",)),
    MetricSpec("alerting.eval.duration_seconds", "seconds", "gauge", "time of one rule evaluation cycle"),
    MetricSpec("alerting.eval.series", "count", "gauge", "series held in the alerting windows"),
)
register_metrics(*ALERT_METRICS)

#: after exceptions arrive, wait this long for the rest of the burst before evaluating
EVENT_DEBOUNCE = 0.05
#: at stop, wait this long for deliveries in flight to finish
STOP_GRACE = 5.0
#: how often alerts.* samples are written to the store (and on every change)
METRICS_EVERY = 60.0


class StoreSource:
    """Reads history from the collector's store after a restart (methods run in the engine thread)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def points(self, metric: str, start: float, end: float) -> Iterable[tuple[dict[str, str], list[tuple[float, float]]]]:
        res = self.store.query(metric, {}, start, end, None, None)
        for s in _series_list(res):
            tags = dict(s.get("tags") or s.get("labels") or {})
            if s.get("host") and "host" not in tags:
                tags["host"] = str(s["host"])  # the store keeps the agent apart from the tags; live samples carry it as a label
            pts = s.get("points") or s.get("values") or []
            yield tags, [(float(p[0]), float(p[1])) for p in pts if p[1] is not None]

    def hosts(self) -> Iterable[tuple[str, float]]:
        res = self.store.hosts()
        if isinstance(res, dict):
            res = res.get("hosts", res)
        if isinstance(res, dict):
            return [(str(k), float(v if not isinstance(v, dict) else v.get("last_seen", 0))) for k, v in res.items()]
        out = []
        for h in res or []:
            if isinstance(h, dict):
                name = h.get("host") or h.get("agent") or h.get("name")
                seen = h.get("last_seen")
            else:
                name = getattr(h, "host", None) or getattr(h, "agent", None) or getattr(h, "name", None)
                seen = getattr(h, "last_seen", None)
            if name and seen:
                out.append((str(name), float(seen)))
        return out

    def events(self, kind: str, start: float, end: float) -> Iterable[Event]:
        res = self.store.events(kind, start, end, None, 100_000)
        for e in res or []:
            if isinstance(e, Event):
                yield e
            elif isinstance(e, dict):
                tags = dict(e.get("tags") or {})
                if e.get("host") and "host" not in tags:
                    tags["host"] = str(e["host"])
                yield Event(e.get("kind", kind), float(e.get("ts", 0)), e.get("message", ""), tags, e.get("data") or {})


def _series_list(res: Any) -> list[dict[str, Any]]:
    if isinstance(res, dict):
        res = res.get("series") or res.get("result") or []
    out = []
    for s in res or []:
        if isinstance(s, dict):
            out.append(s)
        else:
            out.append({"tags": getattr(s, "tags", {}), "points": getattr(s, "points", [])})
    return out


def _db_path(ctx: Any) -> str:
    store = getattr(ctx, "store", None)
    for attr in ("path", "db_path", "db_file", "filename"):
        p = getattr(store, attr, None)
        if isinstance(p, (str, os.PathLike)) and str(p) and str(p) != ":memory:":
            return str(p)
    return os.path.join(str(getattr(ctx, "data_dir", ".")), "alerting.db")


def _base_dir(ctx: Any) -> str | None:
    cc = getattr(ctx, "collector_config", None)
    for attr in ("config_dir", "source_dir", "base_dir"):
        v = getattr(cc, attr, None)
        if v:
            return str(v)
    for attr in ("config_file", "source", "path"):
        v = getattr(cc, attr, None)
        if isinstance(v, (str, os.PathLike)) and str(v):
            return str(Path(v).resolve().parent)
    return None


def _public_url(cfg: AlertingConfig, ctx: Any) -> str:
    if cfg.public_url:
        return cfg.public_url
    cc = getattr(ctx, "collector_config", None)
    v = getattr(cc, "public_url", None)
    if v:
        return str(v)
    listen = getattr(cc, "listen", None)
    if isinstance(listen, str) and ":" in listen:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://{host if ':' not in host else '[' + host + ']'}:{port}"
    return ""


class AlertingExtension:
    """Loaded by the collector when its config has an `alerting:` section."""

    name = "alerting"

    @classmethod
    def validate(cls, raw: Any, path: str = "alerting") -> AlertingConfig:
        cfg = parse_alerting_config(raw, path)
        # relative rule files are resolved against the collector config's directory, known only in __init__
        collect_rules(dataclasses.replace(cfg, rule_files=[p for p in cfg.rule_files if os.path.isabs(p)]), None, path=path)
        return cfg

    def __init__(self, config: Any, ctx: Any) -> None:
        self.cfg: AlertingConfig = config if isinstance(config, AlertingConfig) else parse_alerting_config(config)
        self.ctx = ctx
        self.clock = time.time
        self.base_dir = _base_dir(ctx)
        self.public_url = _public_url(self.cfg, ctx)
        self.db_path = _db_path(ctx)
        self.db = AlertDB(self.db_path)
        self.renderer = Renderer(self.cfg.language, timezone=self.cfg.timezone, public_url=self.public_url, templates_dir=self.cfg.templates_dir)
        self.engine = Engine(
            self.db,
            interval=self.cfg.evaluation_interval,
            resolved_retention=self.cfg.resolved_retention,
            forget_series_after=self.cfg.forget_series_after,
        )
        self.rule_sources: dict[str, str] = {}
        self.engine.set_rules(self._build_rules())
        self.dbw = DBWorker()
        self.silences = Silences(self.db)
        self.acks = Acks(self.db)
        self.nflog = NotificationLog(self.db)
        self.deliveries = DeliveryLog(self.db)
        self.notifier_ctx = NotifierContext(self.renderer)
        self.integrations: dict[str, list[Integration]] = {}
        for rc in self.cfg.receivers:
            lst = []
            for i, ncfg in enumerate(rc.parsed):
                n = build_notifier(ncfg, self.notifier_ctx)
                lst.append(Integration(rc.name, i, n, rc.retry, db=self.dbw, deliveries=self.deliveries, on_done=_noop_done))
            self.integrations[rc.name] = lst
        root_cfg = self.cfg.root_route()
        self.root = build_route(root_cfg) if root_cfg is not None else None
        self.inhibitor = Inhibitor(compile_rules(self.cfg.inhibit_rules, self.cfg.default_inhibit))
        self.dispatcher = Dispatcher(
            self.root, self.integrations, nflog=self.nflog, silences=self.silences, acks=self.acks, inhibitor=self.inhibitor, db=self.dbw,
            resolved_retention=self.cfg.resolved_retention,
        )
        self._eval_ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerting-eval")
        self._kick: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._last_metrics = 0.0
        self._last_purge = 0.0
        self._sighup = False
        self.started = False

    # ------------------------------------------------------------ rules
    def _build_rules(self) -> list[Rule]:
        pairs = collect_rules(self.cfg, self.base_dir)
        self.rule_sources = {rc.name: src for rc, src in pairs}
        return [build_rule(rc, src) for rc, src in pairs]

    def reload(self) -> tuple[bool, str]:
        """Re-read the rule files (SIGHUP). An invalid file is reported and the previous rules stay."""
        try:
            rules = self._build_rules()
        except ConfigError as e:
            log.error("rule reload rejected; previous rules kept", extra={"error": str(e)})
            return False, str(e)
        except OSError as e:
            log.error("rule reload failed; previous rules kept", extra={"error": str(e)})
            return False, str(e)
        self._eval_ex.submit(self.engine.set_rules, rules).result()
        log.info("rules reloaded", extra={"rules": len(rules)})
        return True, f"{len(rules)} rules loaded"

    # ------------------------------------------------------------ collector hooks
    def migrate(self, conn: Any) -> None:
        migrate(conn)

    def in_transaction(self, conn: Any, batch: Batch) -> None:
        return None

    async def after_commit(self, batch: Batch) -> None:
        if self.engine.ingest(batch) and self._kick is not None:
            self._kick.set()

    def routes(self) -> Any:
        from alerting.api import build_routes

        return build_routes(self)

    async def start(self, app: Any = None) -> None:
        loop = asyncio.get_running_loop()
        self._kick = asyncio.Event()
        await loop.run_in_executor(self._eval_ex, self.engine.load_state)
        store = getattr(self.ctx, "store", None)
        if store is not None and hasattr(store, "query"):
            await loop.run_in_executor(self._eval_ex, self.engine.backfill, StoreSource(store))
        await self.dbw.call(self.silences.load)
        await self.dbw.call(self.acks.load)
        await self.dbw.call(self.nflog.load)
        # alerts that fired (or resolved) before a restart: the notification log decides what is still owed
        self.dispatcher.update([a for a in self.engine.snapshot if a.state in ("firing", "resolved")])
        for integs in self.integrations.values():
            for i in integs:
                self._tasks.append(asyncio.create_task(i.run(), name=f"alerting-notify-{i.id}"))
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="alerting-dispatch"))
        self._tasks.append(asyncio.create_task(self._eval_loop(), name="alerting-eval"))
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
            self._sighup = True
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        self.started = True
        log.info("alerting started", extra={"rules": len(self.engine.rules), "receivers": len(self.integrations), "db": self.db_path})

    def _on_sighup(self) -> None:
        asyncio.get_running_loop().run_in_executor(None, self.reload)

    async def stop(self) -> None:
        if self._sighup:
            try:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            except Exception:
                pass
        # stop producing work, then let deliveries in flight finish: their notification-log entry must be
        # written, or the next start would repeat a message that was already delivered
        senders = [t for t in self._tasks if t.get_name().startswith("alerting-notify-")]
        await _cancel([t for t in self._tasks if t not in senders])
        try:
            async with asyncio.timeout(STOP_GRACE):
                while any(i.inflight for integs in self.integrations.values() for i in integs):
                    await asyncio.sleep(0.02)
        except TimeoutError:
            log.warning("deliveries still in flight at stop were abandoned; they are retried after the restart",
                        extra={"grace_seconds": STOP_GRACE})
        await _cancel(senders)
        self._tasks = []
        await self.notifier_ctx.close()
        for integs in self.integrations.values():
            for i in integs:
                await i.notifier.close()
        await asyncio.get_running_loop().run_in_executor(self._eval_ex, self.db.close)
        self._eval_ex.shutdown(wait=False)
        try:
            await self.dbw.call(self.db.close)
        finally:
            self.dbw.shutdown()
        self.started = False

    # ------------------------------------------------------------ loops
    async def _eval_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._kick is not None
        while True:
            now = self.clock()
            wait = max(0.0, self.engine.next_deadline(now) - now)
            event_only = False
            if wait > 0:
                try:
                    async with asyncio.timeout(wait):
                        await self._kick.wait()
                    event_only = True
                except TimeoutError:
                    pass
            self._kick.clear()
            if event_only:
                await asyncio.sleep(EVENT_DEBOUNCE)
                self._kick.clear()
            try:
                changed = await loop.run_in_executor(self._eval_ex, partial(self.engine.evaluate, event_rules_only=event_only))
            except Exception:
                log.exception("evaluation cycle failed")
                await asyncio.sleep(1.0)
                continue
            try:
                self.dispatcher.update(changed)
                await self._emit(changed, event_only)
            except Exception:
                log.exception("handing alerts to the dispatcher failed")
            if self.clock() - self._last_purge > 600:
                self._last_purge = self.clock()
                asyncio.ensure_future(self.dbw.call(self._purge))

    async def _emit(self, changed: list[Any], event_only: bool = False) -> None:
        now = self.clock()
        if not event_only:  # on-arrival cycles can be many per second during a burst
            try:
                self.ctx.emit_metric("alerting.eval.duration_seconds", self.engine.last_cycle_seconds, {})
                self.ctx.emit_metric("alerting.eval.series", float(self.engine.cache.series_count()), {})
            except Exception:
                pass
        if not self.cfg.emit_metrics:
            return
        resolved = [a for a in changed if a.state == "resolved"]
        if not resolved and now - self._last_metrics < METRICS_EVERY:
            return
        self._last_metrics = now
        samples = self.engine.alert_samples(now) + self.engine.resolved_samples(resolved, now)
        try:
            self.ctx.emit_samples(samples)
        except Exception as e:
            log.warning("cannot write alert metrics", extra={"error": str(e)})

    def _purge(self) -> None:
        now = self.clock()
        self.deliveries.purge(now - self.cfg.notification_retention)
        self.nflog.purge(now - max(self.cfg.notification_retention, 86400.0))
        self.silences.purge(now - 7 * 86400.0)
        keep = {(a.fingerprint, a.firing_since or 0.0) for a in self.engine.snapshot}
        self.acks.purge(keep, now - 7 * 86400.0)

    # ------------------------------------------------------------ API helpers
    def find_alert(self, ident: str) -> Any:
        matches = [a for a in self.engine.snapshot if a.fingerprint == ident] or [a for a in self.engine.snapshot if a.fingerprint.startswith(ident)]
        if len(matches) == 1 and len(ident) >= 4:
            return matches[0]
        return None

    def alert_json(self, a: Any, now: float) -> dict[str, Any]:
        d = a.to_json()
        silenced, inhibited = self.dispatcher.muted_by(a, now)
        ack = self.acks.get(a.fingerprint, a.firing_since)
        d["silenced_by"] = silenced
        d["inhibited_by"] = inhibited
        d["ack"] = ack.to_json() if ack else None
        d["source"] = self.rule_sources.get(a.rule, "")
        return d


async def _noop_done(job: Any, delivered: bool) -> None:
    return None


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        try:
            await t
        except (asyncio.CancelledError, Exception):
            pass
