"""The routing tree (Alertmanager semantics): which route(s) an alert takes and how it is grouped there."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from alerting.config import RouteConfig
from alerting.matchers import Matcher, matches_all

DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class Escalation:
    after: float
    receiver: str


@dataclass(slots=True)
class Route:
    """A compiled route with every timing resolved from its ancestors."""

    id: str
    receiver: str
    matchers: tuple[Matcher, ...]
    #: None: group by every label ("...")
    group_by: tuple[str, ...] | None
    group_wait: float
    group_interval: float
    repeat_interval: float
    continue_: bool = False
    routes: list["Route"] = field(default_factory=list)
    escalate: tuple[Escalation, ...] = ()

    def match(self, labels: dict[str, str]) -> list["Route"]:
        """The deepest matching routes (siblings after a match only with `continue`)."""
        if not matches_all(self.matchers, labels):
            return []
        out: list[Route] = []
        for child in self.routes:
            m = child.match(labels)
            if m:
                out.extend(m)
                if not child.continue_:
                    break
        return out or [self]

    def group_labels(self, labels: dict[str, str]) -> dict[str, str]:
        if self.group_by is None:
            return dict(labels)
        return {k: labels[k] for k in self.group_by if k in labels}

    def group_key(self, group_labels: dict[str, str]) -> str:
        return f"{self.id}:{orjson.dumps(group_labels, option=orjson.OPT_SORT_KEYS).decode()}"

    def walk(self) -> list["Route"]:
        out = [self]
        for c in self.routes:
            out.extend(c.walk())
        return out


def build_route(cfg: RouteConfig, parent: Route | None = None, index: int = 0) -> Route:
    """Compile a route tree. The root's matchers are ignored (it matches everything)."""
    matchers = cfg.parsed_matchers if parent is not None else ()
    mstr = ",".join(str(m) for m in matchers)
    rid = "/" if parent is None else f"{parent.id.rstrip('/')}/{index}{{{mstr}}}"
    if cfg.group_by is not None:
        group_by: tuple[str, ...] | None = None if "..." in cfg.group_by else tuple(cfg.group_by)
    else:
        group_by = parent.group_by if parent is not None else ()

    def inherit(v: float | None, attr: str, default: float) -> float:
        if v is not None:
            return v
        return getattr(parent, attr) if parent is not None else default

    r = Route(
        id=rid,
        receiver=cfg.receiver or (parent.receiver if parent else ""),
        matchers=matchers,
        group_by=group_by,
        group_wait=inherit(cfg.group_wait, "group_wait", DEFAULT_GROUP_WAIT),
        group_interval=inherit(cfg.group_interval, "group_interval", DEFAULT_GROUP_INTERVAL),
        repeat_interval=inherit(cfg.repeat_interval, "repeat_interval", DEFAULT_REPEAT_INTERVAL),
        continue_=cfg.continue_,
        escalate=tuple(Escalation(e.after, e.receiver) for e in cfg.escalate) if cfg.escalate else (parent.escalate if parent else ()),
    )
    r.routes = [build_route(c, r, i) for i, c in enumerate(cfg.routes)]
    return r
