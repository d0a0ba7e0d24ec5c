"""The `alerting:` config section (routes, receivers, inhibition) and rule files: schema, loading, errors naming file, rule and field."""

from __future__ import annotations

import glob as globmod
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from alerting.matchers import Matcher
from alerting.rules import RULE_TYPES, RuleConfig, _at_least, _matchers, _positive
from checks.config import ConfigError, Duration, field_alias, from_dict, load_yaml_file

#: the shipped default rule set (config/alerting/rules.yaml in the source tree)
DEFAULT_RULES_FILE = Path(__file__).resolve().parent.parent / "config" / "alerting" / "rules.yaml"


@dataclass(frozen=True, kw_only=True)
class EscalationConfig:
    """Unacknowledged after `after` (since the alert started firing) → also notify `receiver`."""

    after: Duration
    receiver: str


@dataclass(frozen=True, kw_only=True)
class RouteConfig:
    """A node of the routing tree (Alertmanager semantics; unset timings inherit from the parent)."""

    receiver: str | None = None
    #: ['severity="critical"', 'module=~"payment|order"'] or {severity: critical}
    matchers: Any = None
    #: labels that split alerts into notification groups; ['...'] groups by every label
    group_by: list[str] | None = None
    #: wait this long after a group's first alert before notifying (collects a burst into one message)
    group_wait: Duration | None = None
    #: then notify about changes in the group at most this often
    group_interval: Duration | None = None
    #: re-send a still-firing, unacknowledged group this often
    repeat_interval: Duration | None = None
    #: keep matching sibling routes after this one matched
    continue_: bool = field_alias("continue", default=False)
    routes: list["RouteConfig"] = field(default_factory=list)
    #: escalation steps for alerts of this route nobody acknowledged
    escalate: list[EscalationConfig] = field(default_factory=list)
    parsed_matchers: tuple[Matcher, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "parsed_matchers", _matchers(self.matchers, "matchers"))
        _positive(self, "group_interval", "repeat_interval")


@dataclass(frozen=True, kw_only=True)
class RetryConfig:
    """Retry with exponential backoff around a notifier (retryable failures only)."""

    initial_backoff: Duration = 1.0
    max_backoff: Duration = 60.0
    multiplier: float = 2.0
    max_attempts: int = 10
    #: give up after this long (the next group flush tries again)
    max_elapsed: Duration = 900.0

    def __post_init__(self) -> None:
        _at_least(self, 1, "max_attempts", "multiplier")


@dataclass(frozen=True, kw_only=True)
class ReceiverConfig:
    """A named destination: one or more notifiers (`type:` email, webhook, dingtalk, wecom, feishu)."""

    name: str
    notifiers: list[dict[str, Any]] = field(default_factory=list)
    retry: RetryConfig = field(default_factory=RetryConfig)
    parsed: tuple[Any, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        from alerting.notifiers import parse_notifier_config

        out = []
        for i, raw in enumerate(self.notifiers):
            out.append(parse_notifier_config(raw, f"notifiers[{i}]"))
        object.__setattr__(self, "parsed", tuple(out))


@dataclass(frozen=True, kw_only=True)
class InhibitConfig:
    """While an alert matching `source_matchers` fires, alerts matching `target_matchers` are muted
    when the `equal` labels agree. An `equal` entry `a=b` compares the source's label a with the target's label b."""

    source_matchers: Any
    target_matchers: Any
    equal: list[str] = field(default_factory=list)
    name: str = ""
    parsed_source: tuple[Matcher, ...] = field(init=False, default=())
    parsed_target: tuple[Matcher, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "parsed_source", _matchers(self.source_matchers, "source_matchers"))
        object.__setattr__(self, "parsed_target", _matchers(self.target_matchers, "target_matchers"))
        if not self.parsed_source:
            raise ConfigError("source_matchers", "needs at least one matcher")
        for i, e in enumerate(self.equal):
            a, _, b = e.partition("=")
            if not a.strip() or (_ and not b.strip()):
                raise ConfigError(f"equal[{i}]", f"expected a label or source_label=target_label, got {e!r}")


@dataclass(frozen=True, kw_only=True)
class AlertingConfig:
    """The collector's `alerting:` section."""

    #: how often every rule is evaluated (exception rules also run as soon as exceptions arrive)
    evaluation_interval: Duration = 10.0
    #: rules written inline (same schema as a rule file's `rules:` list)
    rules: list[Any] = field(default_factory=list)
    #: rule files, directories (every *.yaml / *.yml) or globs; relative paths are relative to the collector config
    rule_files: list[str] = field(default_factory=list)
    #: load the shipped default rule set (a rule with the same name in your files replaces a default one)
    default_rules: bool = True
    #: names of default rules to switch off
    disabled_rules: list[str] = field(default_factory=list)
    #: link to the collector in messages (default: the collector's public_url)
    public_url: str | None = None
    #: message language: zh-CN (default) or en; a notifier may override it
    language: Literal["zh-CN", "en"] = "zh-CN"
    #: time zone for times in messages (IANA name, e.g. Asia/Shanghai); default: the server's
    timezone: str | None = None
    #: a directory with templates overriding the shipped ones (same file names, per language subdirectory)
    templates_dir: str | None = None
    route: RouteConfig | None = None
    receivers: list[ReceiverConfig] = field(default_factory=list)
    inhibit_rules: list[InhibitConfig] = field(default_factory=list)
    #: add the built-in inhibition: a host that is down mutes that host's other alerts
    default_inhibit: bool = True
    #: resolved alerts are kept (API, restart safety) this long
    resolved_retention: Duration = 3600.0
    #: delivery log entries are kept this long
    notification_retention: Duration = 30 * 86400.0
    #: data series unseen for this long are dropped from memory
    forget_series_after: Duration = 86400.0
    #: write alerts.* metrics (alerts.firing per alert) into the store so sinks receive them
    emit_metrics: bool = True

    def __post_init__(self) -> None:
        _positive(self, "evaluation_interval")
        names = [r.name for r in self.receivers]
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                raise ConfigError(f"receivers[{i}].name", f"duplicate receiver name {n!r}")
            seen.add(n)
        if self.route is not None:
            if not self.route.receiver:
                raise ConfigError("route.receiver", "the root route needs a receiver")
            _check_route(self.route, "route", seen)
        if self.timezone:
            try:
                from zoneinfo import ZoneInfo

                ZoneInfo(self.timezone)
            except Exception:
                raise ConfigError("timezone", f"unknown time zone {self.timezone!r} (use an IANA name such as Asia/Shanghai)") from None

    def root_route(self) -> RouteConfig | None:
        if self.route is not None:
            return self.route
        if self.receivers:
            return RouteConfig(receiver=self.receivers[0].name)
        return None


def _check_route(r: RouteConfig, path: str, receivers: set[str]) -> None:
    if r.receiver is not None and r.receiver not in receivers:
        raise ConfigError(f"{path}.receiver", f"unknown receiver {r.receiver!r}; known: {', '.join(sorted(receivers)) or 'none'}")
    for i, e in enumerate(r.escalate):
        if e.receiver not in receivers:
            raise ConfigError(f"{path}.escalate[{i}].receiver", f"unknown receiver {e.receiver!r}; known: {', '.join(sorted(receivers)) or 'none'}")
    for i, c in enumerate(r.routes):
        _check_route(c, f"{path}.routes[{i}]", receivers)


def parse_alerting_config(raw: Any, path: str = "alerting") -> AlertingConfig:
    """Validate the section and every inline rule; errors name the dotted path (alerting.rules[2].window)."""
    cfg = from_dict(AlertingConfig, raw, path)
    for i, r in enumerate(cfg.rules):
        parse_rule(r, f"{path}.rules[{i}]")
    return cfg


# ---------------------------------------------------------------- rules


def parse_rule(raw: Any, path: str) -> RuleConfig:
    """One rule; a ConfigError names the field path and the rule's name."""
    if not isinstance(raw, dict):
        raise ConfigError(path, "a rule must be a mapping with at least name and type")
    name = raw.get("name")
    label = f"rule {name!r}" if isinstance(name, str) else "rule"
    t = raw.get("type")
    if t is None:
        raise ConfigError(f"{path}.type", f"{label}: is required (one of {', '.join(sorted(RULE_TYPES))})")
    if t not in RULE_TYPES:
        raise ConfigError(f"{path}.type", f"{label}: unknown rule type {t!r}; known types: {', '.join(sorted(RULE_TYPES))}")
    try:
        return from_dict(RULE_TYPES[t].Config, raw, path)
    except ConfigError as e:
        raise ConfigError(e.path, f"{label}: {e.message}") from None


@dataclass(frozen=True, kw_only=True)
class RuleFile:
    rules: list[Any] = field(default_factory=list)


def load_rules_file(path: str | Path) -> list[RuleConfig]:
    """Load and validate a rule file (`rules: [...]`). Errors name the file, line, rule and field."""
    data, lines = load_yaml_file(path)
    try:
        rf = from_dict(RuleFile, data)
        out = []
        names: dict[str, int] = {}
        for i, r in enumerate(rf.rules):
            rc = parse_rule(r, f"rules[{i}]")
            if rc.name in names:
                raise ConfigError(f"rules[{i}].name", f"rule {rc.name!r}: duplicate rule name (also rules[{names[rc.name]}])")
            names[rc.name] = i
            out.append(rc)
        return out
    except ConfigError as e:
        raise e.located(str(path), lines) from None


def expand_rule_paths(patterns: list[str], base_dir: str | None) -> list[Path]:
    out: list[Path] = []
    for pat in patterns:
        p = pat if os.path.isabs(pat) or base_dir is None else os.path.join(base_dir, pat)
        if os.path.isdir(p):
            out.extend(sorted(Path(p).glob("*.yaml")) + sorted(Path(p).glob("*.yml")))
        elif any(c in p for c in "*?["):
            out.extend(Path(x) for x in sorted(globmod.glob(p)))
        else:
            out.append(Path(p))
    return out


def collect_rules(cfg: AlertingConfig, base_dir: str | None = None, *, path: str = "alerting") -> list[tuple[RuleConfig, str]]:
    """Every enabled rule as (config, source): defaults, then rule files, then inline rules.

    A rule in a file or inline replaces a default rule of the same name; two non-default rules
    with the same name are an error naming both places."""
    by_name: dict[str, tuple[RuleConfig, str]] = {}
    default_names: set[str] = set()
    if cfg.default_rules and DEFAULT_RULES_FILE.exists():
        for rc in load_rules_file(DEFAULT_RULES_FILE):
            by_name[rc.name] = (rc, str(DEFAULT_RULES_FILE))
            default_names.add(rc.name)
    for i, pattern in enumerate(cfg.rule_files):
        for f in expand_rule_paths([pattern], base_dir):
            try:
                rcs = load_rules_file(f)
            except ConfigError as e:
                # keep the rule file's own name and line in the message: the collector re-locates errors in its config
                raise ConfigError(f"{path}.rule_files[{i}]", e.render()) from None
            for rc in rcs:
                _add(by_name, default_names, rc, str(f))
    for i, raw in enumerate(cfg.rules):
        rc = parse_rule(raw, f"{path}.rules[{i}]")
        _add(by_name, default_names, rc, f"{path}.rules[{i}]")
    disabled = set(cfg.disabled_rules)
    return [(rc, src) for rc, src in by_name.values() if rc.enabled and rc.name not in disabled]


def _add(by_name: dict[str, tuple[RuleConfig, str]], defaults: set[str], rc: RuleConfig, src: str) -> None:
    if rc.name in by_name and rc.name not in defaults:
        raise ConfigError("name", f"rule {rc.name!r}: defined twice ({by_name[rc.name][1]} and {src})", file=src)
    defaults.discard(rc.name)
    by_name[rc.name] = (rc, src)
