"""The notification pipeline: route → group → inhibit/silence → dedup (notification log) → rate limit, retry with backoff, escalation."""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from alerting.acks import Acks
from alerting.config import RetryConfig
from alerting.inhibit import Inhibitor
from alerting.levels import RANK
from alerting.notifiers.base import Notification, Notifier, NotifyError
from alerting.notifylog import DeliveryLog, Entry, NotificationLog
from alerting.routing import Route
from alerting.silences import Silences
from alerting.state import FIRING, RESOLVED, Alert

log = logging.getLogger("alerting.dispatch")


class DBWorker:
    """Runs database calls of the event-loop side in one dedicated thread (SQLite writes never block the loop)."""

    def __init__(self) -> None:
        self._ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerting-db")

    async def call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._ex, lambda: fn(*args, **kw))

    def shutdown(self) -> None:
        self._ex.shutdown(wait=True)


@dataclass(slots=True)
class Job:
    """One message for one integration, and the notification-log entries to record once it is delivered."""

    notification: Notification
    updates: list[tuple[str, Entry]]

    @property
    def keys(self) -> list[str]:
        return [k for k, _e in self.updates]


def merge_jobs(jobs: list[Job]) -> Job:
    """Several queued messages for a rate-limited integration become one."""
    alerts: dict[str, Alert] = {}
    for j in jobs:
        for a in j.notification.alerts:
            alerts[a.fingerprint] = a
    first = jobs[0].notification
    status = "firing" if any(a.state == FIRING for a in alerts.values()) else "resolved"
    n = Notification(first.receiver, status, list(alerts.values()), first.group_key, {}, merged=sum(j.notification.merged for j in jobs),
                     escalated=any(j.notification.escalated for j in jobs))
    return Job(n, [u for j in jobs for u in j.updates])


def alert_summary(a: Alert) -> dict[str, Any]:
    return {"id": a.fingerprint, "rule": a.rule, "state": a.state, "severity": a.severity,
            "labels": {k: v for k, v in a.labels.items() if k in ("alertname", "host", "module", "target", "probe", "service")}}


class Integration:
    """One notifier of one receiver: its queue, rate limit (messages/minute) and retries with backoff."""

    def __init__(self, receiver: str, index: int, notifier: Notifier, retry: RetryConfig, *, db: DBWorker, deliveries: DeliveryLog,
                 on_done: Callable[[Job, bool], Awaitable[None]], clock: Callable[[], float] = time.time) -> None:
        self.receiver = receiver
        self.index = index
        self.notifier = notifier
        self.retry = retry
        self.id = f"{receiver}/{index}"
        self.name = f"{receiver}/{notifier.name}"
        self.db = db
        self.deliveries = deliveries
        self.on_done = on_done
        self.clock = clock
        self.queue: list[Job] = []
        self.inflight: set[str] = set()
        self._wake = asyncio.Event()
        self._sent: collections.deque[float] = collections.deque()
        self.sleep = asyncio.sleep

    @property
    def send_resolved(self) -> bool:
        return self.notifier.config.send_resolved

    def busy(self, key: str) -> bool:
        return key in self.inflight

    def submit(self, job: Job) -> None:
        """Queue a message; a queued, not yet started message for the same group is replaced by the newer one."""
        keys = set(job.keys)
        self.queue = [j for j in self.queue if not keys & set(j.keys)]
        self.queue.append(job)
        self._wake.set()

    def rate_wait(self) -> float:
        limit = self.notifier.rate_limit
        if not limit:
            return 0.0
        now = time.monotonic()
        while self._sent and now - self._sent[0] >= 60.0:
            self._sent.popleft()
        if len(self._sent) < limit:
            return 0.0
        return 60.0 - (now - self._sent[0]) + 0.01

    async def run(self) -> None:
        while True:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            job = self.queue.pop(0)
            wait = self.rate_wait()
            if wait > 0 and self.queue:
                job = merge_jobs([job] + self.queue)
                self.queue = []
                log.info("rate limit reached: messages merged", extra={"integration": self.name, "merged": job.notification.merged})
            keys = job.keys
            self.inflight.update(keys)
            try:
                if wait > 0:
                    await self.sleep(wait)
                    # more messages may have queued meanwhile: they join this one
                    if self.queue:
                        job = merge_jobs([job] + self.queue)
                        self.queue = []
                        self.inflight.update(job.keys)
                        keys = job.keys
                await self.deliver(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery crashed", extra={"integration": self.name})
            finally:
                self.inflight.difference_update(keys)

    async def deliver(self, job: Job) -> bool:
        """Send with retries; records every attempt in the delivery log. True when delivered."""
        n = job.notification
        r = self.retry
        rid = await self.db.call(self.deliveries.start, self.receiver, self.name, n.group_key, n.status, [alert_summary(a) for a in n.alerts])
        t0 = time.monotonic()
        backoff = r.initial_backoff
        attempt = 0
        while True:
            attempt += 1
            self._sent.append(time.monotonic())
            try:
                await self.notifier.send(n)
            except NotifyError as e:
                err = e
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a notifier bug: keep it visible, treat as retryable
                log.exception("notifier raised", extra={"integration": self.name})
                err = NotifyError(f"{type(e).__name__}: {e}", retryable=True)
            else:
                await self.db.call(self.deliveries.update, rid, outcome="sent", attempts=attempt)
                log.info("notification sent", extra={"integration": self.name, "status": n.status, "alerts": len(n.alerts), "attempts": attempt})
                await self.on_done(job, True)
                return True
            delay = err.retry_after if err.retry_after is not None else backoff * random.uniform(0.8, 1.2)
            elapsed = time.monotonic() - t0
            give_up = (not err.retryable) or attempt >= r.max_attempts or elapsed + delay > r.max_elapsed
            outcome = "failed" if give_up else "retrying"
            await self.db.call(self.deliveries.update, rid, outcome=outcome, attempts=attempt, error=str(err), retryable=err.retryable)
            if give_up:
                log.error(
                    "notification failed" + ("" if err.retryable else " (not retryable)"),
                    extra={"integration": self.name, "attempts": attempt, "retryable": err.retryable, "error": str(err)},
                )
                if not err.retryable:
                    # the same message would fail again: record it as handled, the next repeat tries anew
                    await self.on_done(job, False)
                return False
            log.warning("notification failed, retrying", extra={"integration": self.name, "attempt": attempt, "retry_in": round(delay, 2), "error": str(err)})
            await self.sleep(delay)
            backoff = min(backoff * r.multiplier, r.max_backoff)
            w = self.rate_wait()
            if w > 0:
                await self.sleep(w)


@dataclass(slots=True)
class Group:
    """Alerts of one route with equal group labels, notified together."""

    key: str
    route: Route
    labels: dict[str, str]
    alerts: dict[str, Alert] = field(default_factory=dict)
    next_flush: float = 0.0
    esc_due: float | None = None


class Dispatcher:
    """Turns alert updates into notifications. Runs on the event loop; `update` is cheap, `run` flushes groups when due."""

    def __init__(
        self,
        root: Route | None,
        integrations: dict[str, list[Integration]],
        *,
        nflog: NotificationLog,
        silences: Silences,
        acks: Acks,
        inhibitor: Inhibitor,
        db: DBWorker,
        clock: Callable[[], float] = time.time,
        resolved_retention: float = 3600.0,
    ) -> None:
        self.root = root
        self.integrations = integrations
        self.nflog = nflog
        self.silences = silences
        self.acks = acks
        self.inhibitor = inhibitor
        self.db = db
        self.clock = clock
        self.resolved_retention = resolved_retention
        self.groups: dict[str, Group] = {}
        self.alerts: dict[str, Alert] = {}
        self.alert_groups: dict[str, set[str]] = {}
        self._wake = asyncio.Event()
        for integs in integrations.values():
            for i in integs:
                i.on_done = self._on_done

    # ------------------------------------------------------------ input
    def update(self, alerts: list[Alert]) -> None:
        """Firing alerts (every cycle) and alerts that just resolved."""
        if self.root is None:
            return
        now = self.clock()
        for a in alerts:
            if a.state not in (FIRING, RESOLVED):
                continue
            prev = self.alerts.get(a.fingerprint)
            if a.state == RESOLVED and prev is None and not self._known_firing(a.fingerprint):
                continue  # never notified: nothing to resolve
            self.alerts[a.fingerprint] = a
            keys: set[str] = set()
            for r in self.root.match(a.labels):
                gl = r.group_labels(a.labels)
                key = r.group_key(gl)
                g = self.groups.get(key)
                if g is None:
                    g = self.groups[key] = Group(key, r, gl, next_flush=now + r.group_wait)
                g.alerts[a.fingerprint] = a
                keys.add(key)
            for k in self.alert_groups.get(a.fingerprint, set()) - keys:
                g = self.groups.get(k)
                if g is not None:
                    g.alerts.pop(a.fingerprint, None)
            self.alert_groups[a.fingerprint] = keys
        self.inhibitor.refresh(self.alerts.values())
        self._wake.set()

    def _known_firing(self, fp: str) -> bool:
        return any(fp in e.firing for e in self.nflog.entries.values())

    # ------------------------------------------------------------ status for the API
    def muted_by(self, a: Alert, now: float | None = None) -> tuple[str | None, str | None]:
        return self.silences.muted_by(a.labels, now), self.inhibitor.muted_by(a)

    # ------------------------------------------------------------ loop
    async def run(self) -> None:
        while True:
            now = self.clock()
            for g in list(self.groups.values()):
                if now >= g.next_flush or (g.esc_due is not None and now >= g.esc_due):
                    try:
                        self.flush(g, now)
                    except Exception:
                        log.exception("group flush failed", extra={"group": g.key})
                        g.next_flush = now + g.route.group_interval
            nxt = min([g.next_flush for g in self.groups.values()] + [g.esc_due for g in self.groups.values() if g.esc_due is not None] + [now + 1.0])
            self._wake.clear()
            try:
                async with asyncio.timeout(max(0.005, nxt - self.clock())):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def flush(self, g: Group, now: float) -> None:
        route = g.route
        g.next_flush = now + route.group_interval
        alerts = list(g.alerts.values())
        firing: list[Alert] = []
        resolved: list[Alert] = []
        muted: set[str] = set()
        for a in alerts:
            if a.state == FIRING:
                if self.silences.muted_by(a.labels, now) is None and self.inhibitor.muted_by(a) is None:
                    firing.append(a)
                else:
                    muted.add(a.fingerprint)
            elif a.state == RESOLVED:
                resolved.append(a)
        targets: list[tuple[str, str, list[Alert], bool]] = [(route.receiver, "", firing, False)]
        esc_due = math.inf
        for i, esc in enumerate(route.escalate):
            cands = []
            for a in firing:
                if self.acks.get(a.fingerprint, a.firing_since) is not None or a.firing_since is None:
                    continue
                due = a.firing_since + esc.after
                if now >= due:
                    cands.append(a)
                else:
                    esc_due = min(esc_due, due)
            targets.append((esc.receiver, f"#esc{i}", cands, True))
        g.esc_due = esc_due if math.isfinite(esc_due) else None
        resolved_fps = {a.fingerprint for a in resolved}
        needed: set[str] = set()
        for receiver, suffix, cands, escalated in targets:
            for integ in self.integrations.get(receiver, []):
                key = f"{integ.id}|{g.key}{suffix}"
                if integ.busy(key):
                    needed |= resolved_fps
                    continue
                self._decide(integ, key, g, cands, resolved, now, route.repeat_interval, escalated, muted)
                e = self.nflog.get(key)
                if e is not None:
                    needed |= resolved_fps & set(e.firing)
                if any(key in j.keys for j in integ.queue):
                    needed |= resolved_fps
        for a in resolved:
            if a.fingerprint not in needed or now - (a.resolved_at or now) > self.resolved_retention:
                g.alerts.pop(a.fingerprint, None)
                ks = self.alert_groups.get(a.fingerprint)
                if ks is not None:
                    ks.discard(g.key)
                    if not ks:
                        del self.alert_groups[a.fingerprint]
                        self.alerts.pop(a.fingerprint, None)
        if not g.alerts:
            del self.groups[g.key]

    def _decide(self, integ: Integration, key: str, g: Group, cands: list[Alert], resolved: list[Alert], now: float, repeat_interval: float,
                escalated: bool, muted: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        e = self.nflog.get(key)
        prev = e.firing if e is not None else {}
        firing_now = {a.fingerprint: RANK.get(a.severity, 0) for a in cands}
        # a notified alert that is silenced or inhibited for a while stays "told" (as in Alertmanager): when the
        # mute ends it is not announced again before its repeat_interval
        told_muted = {fp: r for fp, r in prev.items() if fp in muted}
        new = [fp for fp, r in firing_now.items() if fp not in prev or r > prev[fp]]
        gone = [a for a in resolved if a.fingerprint in prev]
        unacked = [a for a in cands if self.acks.get(a.fingerprint, a.firing_since) is None]
        repeat = bool(unacked) and e is not None and now - e.sent_at >= repeat_interval
        send_resolved = integ.send_resolved
        if not (new or repeat or (send_resolved and gone)):
            kept = {**told_muted, **{fp: max(r, prev.get(fp, 0)) for fp, r in firing_now.items()}}
            if e is not None and set(prev) != set(kept):
                # alerts gone without a message (resolved without send_resolved, muted before being told): forget them quietly
                self.nflog.set(key, Entry(kept, {a.fingerprint for a in gone}, e.sent_at))
                asyncio.ensure_future(self.db.call(self.nflog.persist, key))
            return
        msg_alerts = list(cands) + (gone if send_resolved else [])
        if not msg_alerts:
            return
        status = "firing" if cands else "resolved"
        n = Notification(integ.receiver, status, msg_alerts, g.key, g.labels, escalated=escalated)
        integ.submit(Job(n, [(key, Entry({**told_muted, **firing_now}, {a.fingerprint for a in gone}, now))]))

    async def _on_done(self, job: Job, delivered: bool) -> None:
        now = self.clock()
        for key, entry in job.updates:
            entry.sent_at = now
            self.nflog.set(key, entry)
            try:
                await self.db.call(self.nflog.persist, key)
            except Exception as e:
                log.error("cannot persist the notification log", extra={"error": str(e)})
        self._wake.set()

    # ------------------------------------------------------------ test messages
    async def test_receiver(self, name: str) -> list[dict[str, Any]]:
        """Send a test message through every notifier of a receiver (one attempt each)."""
        integs = self.integrations.get(name)
        if integs is None:
            raise KeyError(name)
        now = self.clock()
        a = Alert("0000000000000000", "infrawatch_test", {"alertname": "infrawatch_test", "severity": "info", "host": "infrawatch"}, FIRING, "info",
                  {"summary": "infrawatch test"}, {"type": "test"}, None, None, now, now, None, now)
        out = []
        for integ in integs:
            n = Notification(name, "firing", [a], "test", {}, test=True)
            rid = await self.db.call(integ.deliveries.start, name, integ.name, "test", "firing", [alert_summary(a)])
            try:
                await integ.notifier.send(n)
            except NotifyError as e:
                await self.db.call(integ.deliveries.update, rid, outcome="failed", attempts=1, error=str(e), retryable=e.retryable)
                out.append({"integration": integ.name, "ok": False, "error": str(e), "retryable": e.retryable})
            except Exception as e:
                await self.db.call(integ.deliveries.update, rid, outcome="failed", attempts=1, error=f"{type(e).__name__}: {e}", retryable=None)
                out.append({"integration": integ.name, "ok": False, "error": f"{type(e).__name__}: {e}", "retryable": None})
            else:
                await self.db.call(integ.deliveries.update, rid, outcome="sent", attempts=1)
                out.append({"integration": integ.name, "ok": True})
        return out
