"""Rule types: their YAML schema (frozen dataclasses) and how each turns recent data into observations."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Literal

from alerting.levels import RANK, Levels
from alerting.matchers import Matcher, matches_all, parse_matchers
from alerting.window import Counter1s, MetricCache, MetricStore, Need, Series, _is_glob
from checks.config import ConfigError, Duration, field_alias

Severity = Literal["info", "warning", "critical"]
Op = Literal[">", ">=", "<", "<="]
AGGS = ("avg", "min", "max", "last", "sum", "count", "rate", "delta", "percentile", "p50", "p75", "p90", "p95", "p99", "p999")


# ---------------------------------------------------------------- schema


def _matchers(spec: Any, key: str) -> tuple[Matcher, ...]:
    """Matchers parsed from a config value; a bad one raises ConfigError naming `key`."""
    try:
        return parse_matchers(spec)
    except ValueError as e:
        raise ConfigError(key, str(e)) from None


def _positive(cfg: Any, *names: str) -> None:
    """Raise ConfigError naming the first of the fields `names` of `cfg` that is set but not greater than 0."""
    for n in names:
        v = getattr(cfg, n)
        if v is not None and v <= 0:
            raise ConfigError(n, "must be greater than 0")


def _at_least(cfg: Any, low: int, *names: str) -> None:
    """Raise ConfigError naming the first of the fields `names` of `cfg` below `low`."""
    for n in names:
        if getattr(cfg, n) < low:
            raise ConfigError(n, f"must be at least {low}")


@dataclass(frozen=True, kw_only=True)
class _Matched:
    """Mixin (list it first among the bases): a `match:` option parsed into `matchers` after the other bases' checks."""

    #: tag matchers: {tag: value} (value may start with ~ for a regex, ! for not) or ['tag="v"', 'tag=~"re"'];
    #: for exception rules, on the event's tags (module, service, host) and data fields type, fingerprint
    match: Any = None
    matchers: tuple[Matcher, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        base = getattr(super(), "__post_init__", None)
        if base is not None:
            base()
        object.__setattr__(self, "matchers", _matchers(self.match, "match"))


@dataclass(frozen=True, kw_only=True)
class RuleConfig:
    """Options every rule takes."""

    #: unique rule name; becomes the `alertname` label
    name: str
    type: str
    #: free text shown in messages (optional)
    description: str = ""
    #: static labels added to every alert of this rule (e.g. team, module); used by routing
    labels: dict[str, str] = field(default_factory=dict)
    #: Jinja2 templates rendered when the alert changes state: {{ labels.host }}, {{ value }}, {{ threshold }}
    annotations: dict[str, str] = field(default_factory=dict)
    #: how long the condition must hold before the alert fires (pending meanwhile)
    for_: Duration = field_alias("for", default=0.0)
    #: evaluate this rule every ... (default: the engine's evaluation_interval)
    interval: Duration | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "_-.:" for c in self.name):
            raise ConfigError("name", f"must be non-empty letters, digits, '_', '-', '.', ':' (got {self.name!r})")
        for k in self.labels:
            if k in ("alertname", "severity"):
                raise ConfigError(f"labels.{k}", f"label {k!r} is set by the engine")


@dataclass(frozen=True, kw_only=True)
class LeveledConfig(RuleConfig):
    """A rule with warning/critical thresholds and an optional recovery threshold (hysteresis)."""

    op: Op = ">"
    warning: float | None = None
    critical: float | None = None
    #: resolve only when the value crosses back past this (default: the lowest threshold itself)
    recovery: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            Levels.build(self.op, {"warning": self.warning, "critical": self.critical}, self.recovery)
        except ValueError as e:
            key = "recovery" if "recovery" in str(e) else ("critical" if "critical" in str(e) and self.warning is not None else "warning")
            raise ConfigError(key, str(e)) from None

    def levels(self) -> Levels:
        return Levels.build(self.op, {"warning": self.warning, "critical": self.critical}, self.recovery)


@dataclass(frozen=True, kw_only=True)
class ThresholdConfig(_Matched, LeveledConfig):
    """A metric aggregated over a window compared with thresholds."""

    #: metric name; a glob (`*.up`) matches several
    metric: str
    #: group series by these labels (default: every series on its own)
    by: list[str] | None = None
    window: Duration = 300.0
    agg: str = "avg"
    #: the percentile for agg: percentile (0-100)
    q: float | None = None
    #: groups with fewer points in the window are not evaluated
    min_points: int = 1
    #: unit for messages (percent, bytes, seconds, ...); default from the metric catalogue
    unit: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.agg not in AGGS:
            raise ConfigError("agg", f"must be one of {', '.join(AGGS)}; got {self.agg!r}")
        if self.agg == "percentile" and (self.q is None or not 0 < self.q < 100):
            raise ConfigError("q", "agg: percentile needs q between 0 and 100 (e.g. q: 95)")
        _positive(self, "window")
        _at_least(self, 1, "min_points")

    @property
    def quantile(self) -> float | None:
        if self.agg == "percentile":
            return self.q
        if self.agg.startswith("p") and self.agg[1:].isdigit():
            d = self.agg[1:]
            return float(d) if len(d) <= 2 else float(d[:2] + "." + d[2:])
        return None


@dataclass(frozen=True, kw_only=True)
class PerformanceConfig(ThresholdConfig):
    """Latency of an endpoint, module or SQL fingerprint (a threshold rule with latency defaults)."""

    metric: str = "app.request.duration_p95_seconds"
    agg: str = "max"
    unit: str | None = "seconds"


@dataclass(frozen=True, kw_only=True)
class MetricRef(_Matched):
    metric: str


@dataclass(frozen=True, kw_only=True)
class RatioConfig(LeveledConfig):
    """100 × sum(numerator) / sum(denominator) over a window, e.g. the error rate of requests in percent."""

    numerator: MetricRef
    denominator: MetricRef
    by: list[str] | None = None
    window: Duration = 300.0
    #: sum: the series are per-interval counts; increase: they are cumulative counters
    agg: Literal["sum", "increase"] = "sum"
    #: below this denominator (e.g. requests in the window) the ratio is reported as 0
    min_denominator: float = 1.0
    unit: str | None = "percent"

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "window")


@dataclass(frozen=True, kw_only=True)
class ExceptionsConfig(_Matched, LeveledConfig):
    """More than N application exceptions (events of `kind`) within a window, grouped by labels."""

    by: list[str] = field(default_factory=lambda: ["module"])
    window: Duration = 300.0
    kind: str = "app.exception"
    unit: str | None = "count"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.op not in (">", ">="):
            raise ConfigError("op", "exception counts are compared with > or >=")
        _positive(self, "window")


@dataclass(frozen=True, kw_only=True)
class NewExceptionConfig(_Matched, RuleConfig):
    """A never-seen exception group (fingerprint) appearing in a matching (critical) module."""

    severity: Severity = "warning"
    #: labels copied from the event into the alert
    by: list[str] = field(default_factory=lambda: ["module", "service", "fingerprint"])
    #: the alert resolves this long after the group first appeared
    resolve_after: Duration = 3600.0
    kind: str = "app.exception"

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "resolve_after")


@dataclass(frozen=True, kw_only=True)
class ProbeConfig(_Matched, RuleConfig):
    """A probe (`<type>.up`) failing N times in a row per target."""

    metric: str = "*.up"
    by: list[str] = field(default_factory=lambda: ["host", "target"])
    #: consecutive failed runs before the alert fires
    failures: int = 3
    #: consecutive successful runs before it resolves
    recover_after: int = 1
    #: how far back runs are looked at
    window: Duration = 900.0
    severity: Severity = "critical"

    def __post_init__(self) -> None:
        super().__post_init__()
        _at_least(self, 1, "failures", "recover_after")


@dataclass(frozen=True, kw_only=True)
class HostDownConfig(_Matched, RuleConfig):
    """An agent (host) that stopped reporting for `after`."""

    after: Duration = 120.0
    severity: Severity = "critical"
    #: a host silent for longer than this is forgotten (its alert resolves)
    forget_after: Duration = 7 * 86400.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "after")


@dataclass(frozen=True, kw_only=True)
class AbsentConfig(_Matched, RuleConfig):
    """A metric series that stopped arriving for `after` (seen before, silent since)."""

    metric: str
    after: Duration = 600.0
    severity: Severity = "warning"
    forget_after: Duration = 86400.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "after")


@dataclass(frozen=True, kw_only=True)
class PredictionConfig(_Matched, RuleConfig):
    """A value reaching `limit` within a horizon at its current trend (linear regression over `window`)."""

    metric: str = "system.filesystem.used_percent"
    by: list[str] | None = None
    window: Duration = 6 * 3600.0
    limit: float = 100.0
    #: fire when the limit is predicted within this (warning) / that (critical)
    warning: Duration | None = 24 * 3600.0
    critical: Duration | None = 4 * 3600.0
    #: resolve only when the predicted time exceeds this (hysteresis; default: the warning horizon)
    recovery: Duration | None = None
    min_points: int = 10
    #: the points must span at least this much time
    min_span: Duration = 1800.0

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            Levels.build("<", {"warning": self.warning, "critical": self.critical}, self.recovery)
        except ValueError as e:
            raise ConfigError("recovery" if "recovery" in str(e) else "critical", str(e).replace("below", "shorter than")) from None
        _at_least(self, 3, "min_points")


# ---------------------------------------------------------------- evaluation


@dataclass(slots=True)
class Obs:
    """One group's current value."""

    labels: dict[str, str]
    value: float
    extra: dict[str, Any] | None = None


class EvalContext:
    """What rules read during one evaluation cycle."""

    def __init__(self, cache: MetricCache, hosts: Any, now: float) -> None:
        self.cache = cache
        self.hosts = hosts
        self.now = now
        self.memo: dict[tuple[Any, ...], float | None] = {}


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def counter_increase(vs: list[float]) -> float:
    inc = 0.0
    prev = vs[0]
    for v in vs[1:]:
        inc += v if v < prev else v - prev
        prev = v
    return inc


def aggregate(agg: str, q: float | None, ts: list[float], vs: list[float]) -> float | None:
    if not vs:
        return None
    if agg == "avg":
        return sum(vs) / len(vs)
    if agg == "max":
        return max(vs)
    if agg == "min":
        return min(vs)
    if agg == "last":
        return vs[-1]
    if agg == "sum":
        return math.fsum(vs)
    if agg == "count":
        return float(len(vs))
    if agg == "delta":
        return vs[-1] - vs[0]
    if agg == "rate":
        if len(vs) < 2 or ts[-1] <= ts[0]:
            return None
        return counter_increase(vs) / (ts[-1] - ts[0])
    if q is not None:
        return percentile(vs, q)
    raise ValueError(f"unknown aggregation {agg}")


class Rule:
    """A compiled rule. Subclasses implement `evaluate` (and `observe_event` for event rules)."""

    TYPE: ClassVar[str] = ""
    Config: ClassVar[type[RuleConfig]] = RuleConfig
    #: evaluated again as soon as matching events arrive
    EVENT_RULE: ClassVar[bool] = False

    #: the rule's thresholds, set by each rule type's __init__
    _levels: Levels

    def __init__(self, cfg: RuleConfig, source: str = "") -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.source = source
        self.next_eval = 0.0

    # what the engine needs
    def needs(self) -> dict[str, Need]:
        return {}

    def levels(self) -> Levels:
        return self._levels

    def details(self) -> dict[str, Any]:
        """Static facts about the rule shown in messages (type, metric, window, op, unit)."""
        return {"type": self.TYPE, "description": self.cfg.description}

    #: seconds without an observation after which a firing alert resolves (None: only after the
    #: engine has run this long, see Engine); 0 resolves at once
    def nodata_after(self) -> float:
        return 0.0

    def evaluate(self, ctx: EvalContext) -> list[Obs]:
        raise NotImplementedError

    def observe_event(self, kind: str, ts: float, labels: dict[str, str], data: dict[str, Any]) -> bool:
        return False

    def take_state(self, old: "Rule") -> None:
        """Keep the accumulated state of the rule with the same name from before a reload."""

    def same_as(self, other: "Rule") -> bool:
        return type(self) is type(other) and self.cfg == other.cfg


class _MatchCache:
    """Per rule and metric store: which series match, and their group labels (rescanned on new series)."""

    __slots__ = ("seen", "epoch", "items")

    def __init__(self) -> None:
        self.seen = 0
        self.epoch = -1
        self.items: list[tuple[Series, tuple[str, ...] | None, dict[str, str]]] = []


class SeriesRule(Rule):
    """Base of rules over metric series: matchers, `by` grouping, and the match cache."""

    metric: str
    matchers: tuple[Matcher, ...]
    by: list[str] | None

    def __init__(self, cfg: RuleConfig, source: str = "") -> None:
        super().__init__(cfg, source)
        self._mc: dict[str, _MatchCache] = {}

    def needs(self) -> dict[str, Need]:
        """The rule's metric over its window (rules that read otherwise override this)."""
        n = Need()
        n.merge(self.cfg.window)  # type: ignore[attr-defined]
        return {self.cfg.metric: n}  # type: ignore[attr-defined]

    def matched(self, store: MetricStore, matchers: tuple[Matcher, ...], by: list[str] | None, glob: bool, tag: str = "") -> list[tuple[Series, tuple[str, ...] | None, dict[str, str]]]:
        mc = self._mc.get(store.name + tag)
        if mc is None:
            mc = self._mc[store.name + tag] = _MatchCache()
        if mc.epoch != store.epoch:
            mc.epoch = store.epoch
            mc.seen = 0
            mc.items = []
        series = store.series
        if mc.seen < len(series):
            for s in series[mc.seen:]:
                if not matches_all(matchers, s.labels):
                    continue
                if by is None:
                    gl = dict(s.labels)
                    if glob:
                        gl["metric"] = s.metric
                    mc.items.append((s, None, gl))
                else:
                    gk = tuple(s.labels.get(k, "") for k in by)
                    gl = {k: v for k, v in zip(by, gk) if v}
                    if glob:
                        gl["metric"] = s.metric
                        gk = gk + (s.metric,)
                    mc.items.append((s, gk, gl))
            mc.seen = len(series)
        return mc.items


class ThresholdRule(SeriesRule):
    TYPE = "threshold"
    Config = ThresholdConfig
    cfg: ThresholdConfig

    def __init__(self, cfg: ThresholdConfig, source: str = "") -> None:
        super().__init__(cfg, source)
        self._levels = cfg.levels()
        self.q = cfg.quantile
        self.agg = "percentile" if self.q is not None else cfg.agg

    def nodata_after(self) -> float:
        return self.cfg.window

    def details(self) -> dict[str, Any]:
        c = self.cfg
        return {**super().details(), "metric": c.metric, "agg": c.agg, "q": self.q, "window": c.window, "op": c.op,
                "unit": c.unit or metric_unit(c.metric)}

    def evaluate(self, ctx: EvalContext) -> list[Obs]:
        c = self.cfg
        now = ctx.now
        window = c.window
        t0 = now - window
        agg, q = self.agg, self.q
        glob = _is_glob(c.metric)
        out: list[Obs] = []
        memo = ctx.memo
        minp = c.min_points
        for store in ctx.cache.stores_matching(c.metric):
            items = self.matched(store, c.matchers, c.by, glob)
            if c.by is None:
                for s, _gk, gl in items:
                    if s.last_ts < t0:
                        continue
                    mk = (id(s), window, agg, q, minp)
                    if mk in memo:
                        v = memo[mk]
                    else:
                        ts, vs = s.window(t0, window)
                        v = aggregate(agg, q, ts, vs) if len(vs) >= minp else None
                        memo[mk] = v
                    if v is not None:
                        out.append(Obs(gl, v))
            else:
                groups: dict[tuple[str, ...], tuple[dict[str, str], list[Series]]] = {}
                for s, gk, gl in items:
                    if s.last_ts < t0:
                        continue
                    g = groups.get(gk)  # type: ignore[arg-type]
                    if g is None:
                        groups[gk] = (gl, [s])  # type: ignore[index]
                    else:
                        g[1].append(s)
                for gl, members in groups.values():
                    v = self._group_value(members, t0, window)
                    if v is not None:
                        out.append(Obs(gl, v))
        return out

    def _group_value(self, members: list[Series], t0: float, window: float) -> float | None:
        agg, q = self.agg, self.q
        if len(members) == 1:
            ts, vs = members[0].window(t0, window)
            return aggregate(agg, q, ts, vs) if len(vs) >= self.cfg.min_points else None
        wins = [m.window(t0, window) for m in members]
        npoints = sum(len(w[1]) for w in wins)
        if npoints < self.cfg.min_points:
            return None
        if agg in ("rate", "delta"):
            parts = [aggregate(agg, q, ts, vs) for ts, vs in wins if vs]
            vals = [p for p in parts if p is not None]
            return sum(vals) if vals else None
        if agg == "last":
            best = max((w for w in wins if w[0]), key=lambda w: w[0][-1], default=None)
            return best[1][-1] if best else None
        allv: list[float] = []
        for _ts, vs in wins:
            allv.extend(vs)
        return aggregate(agg, q, [], allv) if agg not in ("rate", "delta") else None


class PerformanceRule(ThresholdRule):
    TYPE = "performance"
    Config = PerformanceConfig


class RatioRule(SeriesRule):
    TYPE = "ratio"
    Config = RatioConfig
    cfg: RatioConfig

    def __init__(self, cfg: RatioConfig, source: str = "") -> None:
        super().__init__(cfg, source)
        self._levels = cfg.levels()

    def needs(self) -> dict[str, Need]:
        out: dict[str, Need] = {}
        for ref in (self.cfg.numerator, self.cfg.denominator):
            n = out.setdefault(ref.metric, Need())
            n.merge(self.cfg.window)
        return out

    def nodata_after(self) -> float:
        return self.cfg.window

    def details(self) -> dict[str, Any]:
        c = self.cfg
        return {**super().details(), "metric": f"{c.numerator.metric} / {c.denominator.metric}", "window": c.window, "op": c.op, "unit": c.unit}

    def _sums(self, ctx: EvalContext, ref: MetricRef, tag: str) -> dict[tuple[str, ...], tuple[dict[str, str], float]]:
        c = self.cfg
        t0 = ctx.now - c.window
        out: dict[tuple[str, ...], tuple[dict[str, str], float]] = {}
        by = c.by or []
        for store in ctx.cache.stores_matching(ref.metric):
            for s, gk, gl in self.matched(store, ref.matchers, by, False, tag):
                if s.last_ts < t0:
                    continue
                ts, vs = s.window(t0, c.window)
                if not vs:
                    continue
                v = math.fsum(vs) if c.agg == "sum" else counter_increase(vs)
                key = gk or ()
                prev = out.get(key)
                out[key] = (gl, v + (prev[1] if prev else 0.0))
        return out

    def evaluate(self, ctx: EvalContext) -> list[Obs]:
        num = self._sums(ctx, self.cfg.numerator, "#num")
        den = self._sums(ctx, self.cfg.denominator, "#den")
        out = []
        for key, (gl, d) in den.items():
            n = num.get(key, (gl, 0.0))[1]
            ratio = 100.0 * n / d if d >= self.cfg.min_denominator and d > 0 else 0.0
            out.append(Obs(gl, ratio, {"numerator": n, "denominator": d}))
        return out


class ProbeRule(SeriesRule):
    TYPE = "probe"
    Config = ProbeConfig
    cfg: ProbeConfig

    def __init__(self, cfg: ProbeConfig, source: str = "") -> None:
        super().__init__(cfg, source)
        self._levels = Levels.build(">=", {cfg.severity: float(cfg.failures)}, -float(cfg.recover_after))

    def nodata_after(self) -> float:
        return self.cfg.window

    def details(self) -> dict[str, Any]:
        return {**super().details(), "metric": self.cfg.metric, "failures": self.cfg.failures, "op": ">=", "unit": "runs"}

    def evaluate(self, ctx: EvalContext) -> list[Obs]:
        c = self.cfg
        t0 = ctx.now - c.window
        groups: dict[tuple[str, ...], tuple[dict[str, str], list[Series]]] = {}
        for store in ctx.cache.stores_matching(c.metric):
            probe = store.name[: -len(".up")] if store.name.endswith(".up") else store.name
            for s, gk, gl in self.matched(store, c.matchers, c.by, False):
                if s.last_ts < t0:
                    continue
                key = (probe,) + (gk or ())
                g = groups.get(key)
                if g is None:
                    groups[key] = ({**gl, "probe": probe}, [s])
                else:
                    g[1].append(s)
        out = []
        need = max(c.failures, c.recover_after)
        for gl, members in groups.values():
            runs: list[tuple[float, float, str]] = []
            for s in members:
                ts, vs = s.window(t0, c.window)
                res = s.labels.get("result", "")
                runs.extend((t, v, res) for t, v in zip(ts[-need:], vs[-need:]))
            if not runs:
                continue
            runs.sort()
            last_ok = runs[-1][1] > 0
            streak = 0
            for _t, v, _r in reversed(runs):
                if (v > 0) != last_ok:
                    break
                streak += 1
            value = -float(streak) if last_ok else float(streak)
            out.append(Obs(gl, value, {"result": runs[-1][2]}))
        return out


class HostDownRule(Rule):
    TYPE = "host_down"
    Config = HostDownConfig
    cfg: HostDownConfig

    def __init__(self, cfg: HostDownConfig, source: str = "") -> None:
        super().__init__(cfg, source)
        self._levels = Levels.build(">", {cfg.severity: cfg.after}, None)

    def details(self) -> dict[str, Any]:
        return {**super().details(), "op": ">", "unit": "seconds", "after": self.cfg.after}

    def evaluate(self, ctx: EvalContext) -> list[Obs]:
        out = []
        now = ctx.now
        for host, seen in ctx.hosts.items():
            age = max(0.0, now - seen)
            if age > self.cfg.forget_after:
                continue
            labels = {"host": host}
            if matches_all(self.cfg.matchers, labels):
                out.append(Obs(labels, age, {"last_seen": seen}))
        return out


class AbsentRule(SeriesRule):
    TYPE = "absent"
    Config = AbsentConfig
    cfg: AbsentConfig

    def __init__(self, cfg: AbsentConfig, source: str = "") -> None:
        super().__init__(cfg, source)
        self._levels = Levels.build(">", {cfg.severity: cfg.after}, None)

    def needs(self) -> dict[str, Need]:
        return {self.cfg.metric: Need(raw=60.0)}

    def details(self) -> dict[str, Any]:
        return {**super().details(), "metric": self.cfg.metric, "op": ">", "unit": "seconds", "after": self.cfg.after}

    def evaluate(self, ctx: EvalContext) -> list[Obs]:
        out = []
        glob = _is_glob(self.cfg.metric)
        for store in ctx.cache.stores_matching(self.cfg.metric):
            for s, _gk, gl in self.matched(store, self.cfg.matchers, None, glob):
                age = ctx.now - s.last_ts
                if age <= self.cfg.forget_after:
                    out.append(Obs(gl, max(0.0, age), {"last_seen": s.last_ts}))
        return out


class PredictionRule(SeriesRule):
    TYPE = "prediction"
    Config = PredictionConfig
    cfg: PredictionConfig

    def __init__(self, cfg: PredictionConfig, source: str = "") -> None:
        super().__init__(cfg, source)
        self._levels = Levels.build("<", {"warning": cfg.warning, "critical": cfg.critical}, cfg.recovery)

    def nodata_after(self) -> float:
        return min(self.cfg.window, 3600.0)

    def details(self) -> dict[str, Any]:
        c = self.cfg
        return {**super().details(), "metric": c.metric, "window": c.window, "limit": c.limit, "op": "<", "unit": "seconds",
                "metric_unit": metric_unit(c.metric)}

    def evaluate(self, ctx: EvalContext) -> list[Obs]:
        c = self.cfg
        t0 = ctx.now - c.window
        out = []
        glob = _is_glob(c.metric)
        for store in ctx.cache.stores_matching(c.metric):
            groups: dict[Any, tuple[dict[str, str], list[Series]]] = {}
            for s, gk, gl in self.matched(store, c.matchers, c.by, glob):
                if s.last_ts < t0:
                    continue
                key = gk if gk is not None else s.key
                g = groups.get(key)
                if g is None:
                    groups[key] = (gl, [s])
                else:
                    g[1].append(s)
            for gl, members in groups.values():
                ts: list[float] = []
                vs: list[float] = []
                for s in members:
                    a, b = s.window(t0, c.window)
                    ts.extend(a)
                    vs.extend(b)
                if len(ts) < c.min_points or max(ts) - min(ts) < c.min_span:
                    continue
                current = vs[ts.index(max(ts))] if len(members) > 1 else vs[-1]
                seconds, slope = time_to_limit(ts, vs, c.limit, ctx.now)
                if current >= c.limit:
                    seconds = 0.0
                out.append(Obs(gl, seconds, {"current": current, "slope_per_hour": slope * 3600.0, "limit": c.limit}))
        return out


def time_to_limit(ts: list[float], vs: list[float], limit: float, now: float) -> tuple[float, float]:
    """Least-squares line through (ts, vs); seconds from `now` until it reaches `limit` (inf if never)."""
    n = len(ts)
    t_mean = sum(ts) / n
    v_mean = sum(vs) / n
    sxx = 0.0
    sxy = 0.0
    for t, v in zip(ts, vs):
        dt = t - t_mean
        sxx += dt * dt
        sxy += dt * (v - v_mean)
    if sxx <= 0:
        return math.inf, 0.0
    slope = sxy / sxx
    if slope <= 0:
        return math.inf, slope
    v_now = v_mean + slope * (now - t_mean)
    return max(0.0, (limit - v_now) / slope), slope


def _event_labels(by: Iterable[str], labels: dict[str, str], data: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k in by:
        v = labels.get(k)
        if v is None:
            dv = data.get(k)
            v = str(dv) if dv is not None and not isinstance(dv, (dict, list)) else ""
        if v:
            out[k] = v[:256]
    return out


def _event_match_labels(labels: dict[str, str], data: dict[str, Any]) -> dict[str, str]:
    m = dict(labels)
    for k in ("type", "fingerprint", "endpoint"):
        v = data.get(k)
        if isinstance(v, str) and k not in m:
            m[k] = v
    return m


def event_count(data: dict[str, Any]) -> float:
    n = data.get("count", 1)
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 1 or not math.isfinite(n):
        return 1.0
    return float(n)


class ExceptionsRule(Rule):
    TYPE = "exceptions"
    Config = ExceptionsConfig
    EVENT_RULE = True
    cfg: ExceptionsConfig

    def __init__(self, cfg: ExceptionsConfig, source: str = "") -> None:
        super().__init__(cfg, source)
        self._levels = cfg.levels()
        self.groups: dict[tuple[str, ...], Counter1s] = {}

    def details(self) -> dict[str, Any]:
        c = self.cfg
        return {**super().details(), "metric": c.kind, "window": c.window, "op": c.op, "unit": "count"}

    def take_state(self, old: Rule) -> None:
        if isinstance(old, ExceptionsRule) and old.cfg.kind == self.cfg.kind and old.cfg.matchers == self.cfg.matchers and old.cfg.by == self.cfg.by:
            self.groups = old.groups

    def observe_event(self, kind: str, ts: float, labels: dict[str, str], data: dict[str, Any]) -> bool:
        c = self.cfg
        if kind != c.kind:
            return False
        if c.matchers and not matches_all(c.matchers, _event_match_labels(labels, data)):
            return False
        gl = _event_labels(c.by, labels, data)
        key = tuple(gl.get(k, "") for k in c.by)
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = Counter1s(gl)
        g.add(ts, event_count(data))
        return True

    def evaluate(self, ctx: EvalContext) -> list[Obs]:
        t0 = ctx.now - self.cfg.window
        out = []
        dead = []
        for key, g in self.groups.items():
            g.trim(t0)
            n = g.count_since(t0)
            out.append(Obs(g.labels, n))
            if n == 0:
                dead.append(key)
        for key in dead:
            del self.groups[key]
        return out


class NewExceptionRule(Rule):
    TYPE = "new_exception"
    Config = NewExceptionConfig
    EVENT_RULE = True
    cfg: NewExceptionConfig

    def __init__(self, cfg: NewExceptionConfig, source: str = "") -> None:
        super().__init__(cfg, source)
        self._levels = Levels.build("<", {cfg.severity: cfg.resolve_after}, None)
        #: fingerprint → (first seen, labels, extra)
        self.fresh: dict[str, tuple[float, dict[str, str], dict[str, Any]]] = {}
        #: set by the engine: fingerprint → first seen (shared, persisted)
        self.seen: dict[str, float] = {}
        self.new_seen: list[tuple[str, float]] = []

    def details(self) -> dict[str, Any]:
        return {**super().details(), "metric": self.cfg.kind, "op": "<", "unit": "seconds"}

    def take_state(self, old: Rule) -> None:
        if isinstance(old, NewExceptionRule):
            self.fresh = old.fresh

    def observe_event(self, kind: str, ts: float, labels: dict[str, str], data: dict[str, Any]) -> bool:
        c = self.cfg
        if kind != c.kind:
            return False
        fp = data.get("fingerprint")
        if not isinstance(fp, str) or not fp:
            return False
        if fp in self.seen:
            return False
        ml = _event_match_labels(labels, data)
        self.seen[fp] = ts
        self.new_seen.append((fp, ts))
        if c.matchers and not matches_all(c.matchers, ml):
            return False
        gl = _event_labels(c.by, labels, data)
        gl.setdefault("fingerprint", fp[:64])
        extra = {"type": str(data.get("type", ""))[:200], "message": str(data.get("message", ""))[:500]}
        self.fresh[fp] = (ts, gl, extra)
        return True

    def evaluate(self, ctx: EvalContext) -> list[Obs]:
        out = []
        for fp, (first, gl, extra) in list(self.fresh.items()):
            age = max(0.0, ctx.now - first)
            out.append(Obs(dict(gl), age, extra))
            if age >= self.cfg.resolve_after:
                del self.fresh[fp]
        return out


RULE_TYPES: dict[str, type[Rule]] = {
    "threshold": ThresholdRule,
    "performance": PerformanceRule,
    "ratio": RatioRule,
    "error_rate": RatioRule,
    "probe": ProbeRule,
    "host_down": HostDownRule,
    "absent": AbsentRule,
    "exceptions": ExceptionsRule,
    "new_exception": NewExceptionRule,
    "prediction": PredictionRule,
}


_unit_cache: dict[str, str] | None = None


def metric_unit(name: str) -> str:
    """The unit the metric catalogue declares for `name` ('' when unknown or a glob)."""
    global _unit_cache
    if _unit_cache is None:
        try:
            from checks.catalogue import all_metrics

            _unit_cache = {k: v.unit for k, v in all_metrics().items()}
        except Exception:
            _unit_cache = {}
    u = _unit_cache.get(name)
    if u:
        return u
    if name.endswith("_percent"):
        return "percent"
    if name.endswith("_bytes"):
        return "bytes"
    if name.endswith("_seconds"):
        return "seconds"
    if name.endswith("_ratio"):
        return "ratio"
    return ""


def rule_config_class(type_name: str) -> type[RuleConfig]:
    return RULE_TYPES[type_name].Config


def build_rule(cfg: RuleConfig, source: str = "") -> Rule:
    return RULE_TYPES[cfg.type](cfg, source)  # type: ignore[arg-type]


def severity_rank(s: str | None) -> int:
    return RANK.get(s or "", 0)


def replace_cfg(cfg: RuleConfig, **kw: Any) -> RuleConfig:
    return dataclasses.replace(cfg, **kw)
