"""The rule engine: feeds recent data into rules and drives each alert through pending → firing → resolved."""

from __future__ import annotations

import collections
import logging
import math
import time
from typing import Any, Callable, Iterable, Protocol

from alerting.rules import EvalContext, NewExceptionRule, Obs, Rule
from alerting.state import FIRING, PENDING, RESOLVED, Alert, AlertDB, fingerprint
from alerting.window import HostSeen, MetricCache, Need
from checks.model import Batch, Event, Sample

log = logging.getLogger("alerting.engine")

NEW_EXCEPTION_LOOKBACK = 7 * 86400.0


class DataSource(Protocol):
    """Read access to the collector's store used to fill the windows after a (re)start."""

    def points(self, metric: str, start: float, end: float) -> Iterable[tuple[dict[str, str], list[tuple[float, float]]]]: ...

    def hosts(self) -> Iterable[tuple[str, float]]: ...

    def events(self, kind: str, start: float, end: float) -> Iterable[Event]: ...


def sample_labels(agent: str, tags: dict[str, str]) -> dict[str, str]:
    """Labels of a reading: its tags plus `host` (the agent's name) unless the reading names its host."""
    if "host" in tags:
        return tags
    d = dict(tags)
    d["host"] = agent
    return d


_jinja_env: Any = None


def render_annotations(templates: dict[str, str], alert: Alert) -> dict[str, str]:
    global _jinja_env
    if not templates:
        return {}
    if _jinja_env is None:
        from jinja2.sandbox import SandboxedEnvironment

        _jinja_env = SandboxedEnvironment(autoescape=False)
    out = {}
    ctx = {
        "labels": alert.labels, "value": alert.value, "threshold": alert.threshold, "severity": alert.severity,
        "rule": alert.rule, "details": alert.details, "extra": alert.extra,
    }
    for k, t in templates.items():
        try:
            out[k] = _jinja_env.from_string(t).render(ctx)
        except Exception as e:
            log.warning("annotation template failed", extra={"rule": alert.rule, "annotation": k, "error": str(e)})
            out[k] = t
    return out


class Engine:
    """Evaluates rules over the windows; owns every Alert. Not thread-safe: one thread calls
    `evaluate`/`set_rules`/`start`; other threads only call `ingest` and read `snapshot`."""

    def __init__(
        self,
        db: AlertDB,
        *,
        interval: float = 10.0,
        resolved_retention: float = 3600.0,
        forget_series_after: float = 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.interval = interval
        self.resolved_retention = resolved_retention
        self.forget_series_after = forget_series_after
        self.clock = clock
        self.rules: list[Rule] = []
        self.cache = MetricCache()
        self.hosts = HostSeen()
        self.alerts: dict[str, Alert] = {}
        self.by_rule: dict[str, set[str]] = collections.defaultdict(set)
        self.seen_exceptions: dict[str, float] = {}
        self.event_kinds: frozenset[str] = frozenset()
        self._pending: collections.deque[Batch] = collections.deque()
        self._hosts_dirty: dict[str, float] = {}
        self._seen_dirty: list[tuple[str, float]] = []
        self._last_obs: dict[str, float] = {}
        self._fp_cache: dict[str, dict[int, tuple[dict[str, str], str, dict[str, str]]]] = {}
        self._last_trim = 0.0
        self.started_at = clock()
        #: immutable copies of the current alerts, for other threads
        self.snapshot: tuple[Alert, ...] = ()
        self.cycles = 0
        self.last_cycle_seconds = 0.0

    # ------------------------------------------------------------ rules and state
    def set_rules(self, rules: list[Rule]) -> None:
        """Install a (re)loaded rule set; rules that did not change keep their accumulated state."""
        old = {r.name: r for r in self.rules}
        out = []
        for r in rules:
            prev = old.get(r.name)
            if prev is not None:
                if prev.same_as(r):
                    r = prev
                else:
                    r.take_state(prev)
            if isinstance(r, NewExceptionRule):
                r.seen = self.seen_exceptions
            out.append(r)
        self.rules = out
        needs: dict[str, Need] = {}
        for r in out:
            for m, n in r.needs().items():
                cur = needs.setdefault(m, Need())
                cur.raw = max(cur.raw, n.raw)
                cur.coarse = max(cur.coarse, n.coarse)
        self.cache.configure(needs, self.forget_series_after)
        self.event_kinds = frozenset(getattr(r.cfg, "kind", "") for r in out if r.EVENT_RULE)

    def load_state(self) -> None:
        """Restore alerts, host last-seen times and known exception groups from the database."""
        now = self.clock()
        for a in self.db.load_alerts():
            self.alerts[a.fingerprint] = a
            self.by_rule[a.rule].add(a.fingerprint)
            self._last_obs[a.fingerprint] = now
        for h, ts in self.db.load_hosts().items():
            self.hosts.seen(h, ts)
        self.seen_exceptions.update(self.db.load_seen())
        self._publish()

    def backfill(self, source: DataSource, now: float | None = None) -> None:
        """Fill the windows from the store (after a restart) so rules see history at once."""
        now = now or self.clock()
        for name, st in list(self.cache.stores.items()) + [(n, None) for n in self.cache.needs if n not in self.cache.stores]:
            need = self.cache.needs.get(name) or (st.need if st else None)
            if need is None:
                continue
            span = max(need.raw, need.coarse) + 60.0
            try:
                for labels, pts in source.points(name, now - span, now):
                    for ts, v in pts:
                        self.cache.add(name, labels, ts, v)
            except Exception as e:
                log.warning("backfill of a metric failed", extra={"metric": name, "error": str(e)})
        try:
            for host, ts in source.hosts():
                self.hosts.seen(host, ts)
        except Exception as e:
            log.warning("backfill of hosts failed", extra={"error": str(e)})
        seed_seen = self.db.meta("seen_seeded") is None
        for kind in self.event_kinds:
            windows = [getattr(r.cfg, "window", 0.0) for r in self.rules if r.EVENT_RULE and getattr(r.cfg, "kind", "") == kind]
            span = max(windows + [NEW_EXCEPTION_LOOKBACK if seed_seen else 0.0]) + 60.0
            try:
                evs = list(source.events(kind, now - span, now))
            except Exception as e:
                log.warning("backfill of events failed", extra={"kind": kind, "error": str(e)})
                continue
            for ev in evs:
                fp = ev.data.get("fingerprint") if isinstance(ev.data, dict) else None
                if isinstance(fp, str) and fp and fp not in self.seen_exceptions:
                    self.seen_exceptions[fp] = ev.ts
                    self._seen_dirty.append((fp, ev.ts))
                labels = ev.tags
                for r in self.rules:
                    if r.EVENT_RULE and not isinstance(r, NewExceptionRule):
                        r.observe_event(ev.kind, ev.ts, labels, ev.data)
        if seed_seen:
            self.db.set_meta("seen_seeded", str(now))
        self._flush_side_tables()

    # ------------------------------------------------------------ input (any thread)
    def ingest(self, batch: Batch) -> bool:
        """Queue a committed batch; True when it holds events an event rule waits for."""
        self._pending.append(batch)
        kinds = self.event_kinds
        if kinds and batch.events:
            for e in batch.events:
                if e.kind in kinds:
                    return True
        return False

    def _drain(self, now: float) -> None:
        pending = self._pending
        cache = self.cache
        while pending:
            b = pending.popleft()
            agent = b.agent
            # the collector's clock decides (an agent's clock running ahead must not postpone its host_down)
            self.hosts.seen(agent, now)
            self._hosts_dirty[agent] = self.hosts.last_seen[agent]
            store_for = cache.store_for
            for s in b.samples:
                st = store_for(s.name)
                if st is not None:
                    st.get(sample_labels(agent, s.tags)).add(s.ts, s.value)
            if b.events:
                self._observe_events(agent, b.events)

    def _observe_events(self, agent: str, events: list[Event]) -> None:
        event_rules = [r for r in self.rules if r.EVENT_RULE]
        if not event_rules:
            return
        kinds = self.event_kinds
        for e in events:
            if e.kind not in kinds:
                continue
            labels = sample_labels(agent, e.tags)
            data = e.data if isinstance(e.data, dict) else {}
            fp = data.get("fingerprint")
            is_new = isinstance(fp, str) and bool(fp) and fp not in self.seen_exceptions
            for r in event_rules:
                if isinstance(r, NewExceptionRule):
                    if is_new:
                        r.observe_event(e.kind, e.ts, labels, data)
                else:
                    r.observe_event(e.kind, e.ts, labels, data)
            if is_new:
                self.seen_exceptions[fp] = e.ts  # type: ignore[index]
                self._seen_dirty.append((fp, e.ts))  # type: ignore[arg-type]

    # ------------------------------------------------------------ evaluation (engine thread)
    def evaluate(self, now: float | None = None, *, event_rules_only: bool = False) -> list[Alert]:
        """One cycle. Returns copies of alerts the dispatcher must know about: every firing alert
        and those resolved in this cycle."""
        t0 = time.perf_counter()
        now = self.clock() if now is None else now
        self._drain(now)
        ctx = EvalContext(self.cache, self.hosts, now)
        changed: dict[str, Alert] = {}
        resolved_now: list[Alert] = []
        for rule in self.rules:
            if event_rules_only and not rule.EVENT_RULE:
                continue
            if not event_rules_only:
                if rule.next_eval > now:
                    continue
                rule.next_eval = now + (rule.cfg.interval or self.interval) * 0.999
            try:
                obs = rule.evaluate(ctx)
            except Exception as e:
                log.exception("rule evaluation failed", extra={"rule": rule.name, "error": str(e)})
                continue
            self._apply(rule, obs, now, changed, resolved_now)
        # alerts of rules that no longer exist resolve
        names = {r.name for r in self.rules}
        for rname in [n for n in self.by_rule if n not in names]:
            for fp in list(self.by_rule[rname]):
                a = self.alerts.get(fp)
                if a is not None and a.state in (PENDING, FIRING):
                    a.annotations = {**a.annotations, "resolved_reason": "rule removed"}
                    self._resolve(a, now, changed, resolved_now)
        if not event_rules_only:
            self._housekeeping(now, changed)
        if changed:
            try:
                self.db.save_alerts(a for a in changed.values() if a.fingerprint in self.alerts)
            except Exception as e:
                log.error("cannot persist alert state", extra={"error": str(e)})
        self._flush_side_tables()
        self._publish()
        self.cycles += 1
        self.last_cycle_seconds = time.perf_counter() - t0
        out = [a.copy() for a in self.alerts.values() if a.state == FIRING]
        out.extend(a.copy() for a in resolved_now)
        return out

    def _apply(self, rule: Rule, obs: list[Obs], now: float, changed: dict[str, Alert], resolved_now: list[Alert]) -> None:
        levels = rule.levels()
        rule_labels = rule.cfg.labels
        for_ = rule.cfg.for_
        seen: set[str] = set()
        mine = self.by_rule[rule.name]
        fpc = self._fp_cache.setdefault(rule.name, {})
        if len(fpc) > max(10_000, 4 * len(obs)):
            fpc.clear()
        classify = levels.classify
        for o in obs:
            if not mine and classify(o.value, None)[0] is None:
                continue  # healthy and nothing active for this rule: the common case, kept cheap
            ck = fpc.get(id(o.labels))
            if ck is not None and ck[0] is o.labels:
                fp, base = ck[1], ck[2]
            else:
                base = {**o.labels, **rule_labels, "alertname": rule.name}
                base.pop("severity", None)
                fp = fingerprint(base)
                fpc[id(o.labels)] = (o.labels, fp, base)
            labels = dict(base)
            seen.add(fp)
            a = self.alerts.get(fp)
            active = a is not None and a.state in (PENDING, FIRING)
            sev, thr = levels.classify(o.value, a.severity if active else None)  # type: ignore[union-attr]
            if sev is None:
                if active:
                    a.value = o.value  # type: ignore[union-attr]
                    self._resolve(a, now, changed, resolved_now)  # type: ignore[arg-type]
                continue
            self._last_obs[fp] = now
            if not active:
                labels["severity"] = sev
                a = Alert(fp, rule.name, labels, PENDING, sev, {}, rule.details(), o.value, thr, now, None, None, now, o.extra or {})
                self.alerts[fp] = a
                mine.add(fp)
                if for_ <= 0:
                    a.state = FIRING
                    a.firing_since = now
                a.annotations = render_annotations(rule.cfg.annotations, a)
                changed[fp] = a
                continue
            assert a is not None
            a.value = o.value
            a.threshold = thr
            if o.extra:
                a.extra = o.extra
            if sev != a.severity:
                a.severity = sev
                a.labels["severity"] = sev
                a.updated_at = now
                a.annotations = render_annotations(rule.cfg.annotations, a)
                changed[fp] = a
            if a.state == PENDING and now - a.active_since >= for_:
                a.state = FIRING
                a.firing_since = now
                a.updated_at = now
                a.annotations = render_annotations(rule.cfg.annotations, a)
                changed[fp] = a
        # active alerts without an observation this cycle
        nodata = rule.nodata_after()
        for fp in list(mine):
            if fp in seen:
                continue
            a = self.alerts.get(fp)
            if a is None:
                mine.discard(fp)
                continue
            if a.state == PENDING:
                self._drop(fp, changed)
            elif a.state == FIRING:
                last = self._last_obs.get(fp, self.started_at)
                if now - last >= nodata:
                    a.annotations = {**a.annotations, "resolved_reason": "no data"}
                    self._resolve(a, now, changed, resolved_now)

    def _resolve(self, a: Alert, now: float, changed: dict[str, Alert], resolved_now: list[Alert]) -> None:
        if a.state == PENDING:
            self._drop(a.fingerprint, changed)
            return
        a.state = RESOLVED
        a.resolved_at = now
        a.updated_at = now
        changed[a.fingerprint] = a
        resolved_now.append(a)

    def _drop(self, fp: str, changed: dict[str, Alert]) -> None:
        a = self.alerts.pop(fp, None)
        if a is not None:
            self.by_rule[a.rule].discard(fp)
        changed.pop(fp, None)
        self._last_obs.pop(fp, None)
        try:
            self.db.delete_alerts([fp])
        except Exception as e:
            log.error("cannot delete alert", extra={"error": str(e)})

    def _housekeeping(self, now: float, changed: dict[str, Alert]) -> None:
        old = [fp for fp, a in self.alerts.items() if a.state == RESOLVED and now - (a.resolved_at or now) > self.resolved_retention]
        for fp in old:
            a = self.alerts.pop(fp)
            self.by_rule[a.rule].discard(fp)
            self._last_obs.pop(fp, None)
            changed.pop(fp, None)
        if old:
            try:
                self.db.delete_alerts(old)
            except Exception as e:
                log.error("cannot delete alerts", extra={"error": str(e)})
        if now - self._last_trim >= 30.0:
            self._last_trim = now
            self.cache.trim(now)

    def _flush_side_tables(self) -> None:
        try:
            if self._hosts_dirty:
                self.db.save_hosts(self._hosts_dirty.items())
                self._hosts_dirty = {}
            if self._seen_dirty:
                self.db.save_seen(self._seen_dirty)
                self._seen_dirty = []
        except Exception as e:
            log.error("cannot persist host/exception state", extra={"error": str(e)})

    def _publish(self) -> None:
        self.snapshot = tuple(a.copy() for a in self.alerts.values())

    # ------------------------------------------------------------ misc
    def alert_samples(self, now: float) -> list[Sample]:
        """`alerts.firing` (1 per firing alert) and `alerts.active` per severity, for the store and sinks."""
        out: list[Sample] = []
        counts = {"warning": 0, "critical": 0, "info": 0}
        for a in self.snapshot:
            if a.state != FIRING:
                continue
            counts[a.severity] = counts.get(a.severity, 0) + 1
            tags = _metric_tags(a.labels)
            out.append(Sample("alerts.firing", 1.0, now, tags))
        for sev, n in counts.items():
            out.append(Sample("alerts.active", float(n), now, {"severity": sev}))
        return out

    def resolved_samples(self, alerts: Iterable[Alert], now: float) -> list[Sample]:
        return [Sample("alerts.firing", 0.0, now, _metric_tags(a.labels)) for a in alerts if a.state == RESOLVED]

    def next_deadline(self, now: float) -> float:
        if not self.rules:
            return now + self.interval
        return min(r.next_eval for r in self.rules)


def _metric_tags(labels: dict[str, str]) -> dict[str, str]:
    from checks.model import MAX_TAG_VALUE_LEN, TAG_KEY_RE

    tags: dict[str, str] = {}
    for k in ("alertname", "severity", "host", "module", "target", "probe", "service", "mountpoint"):
        v = labels.get(k)
        if v and TAG_KEY_RE.match(k):
            tags[k] = v[:MAX_TAG_VALUE_LEN]
    return tags


def is_finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)
