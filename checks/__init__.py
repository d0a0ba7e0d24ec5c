"""Check registry: YAML `type:` → check class, imported lazily; the one place that lists check types."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from checks.config import ConfigError, from_dict

if TYPE_CHECKING:
    from checks.base import Check

# One line per check type. Adding a type: its module, this line, config/checks/<type>.yaml, tests/checks/test_<type>.py.
CHECKS: dict[str, str] = {
    # host resources (issue 2)
    "cpu": "checks.system.cpu:CpuCheck",
    "memory": "checks.system.memory:MemoryCheck",
    "disk": "checks.system.disk:DiskCheck",
    "network": "checks.system.network:NetworkCheck",
    "system": "checks.system.host:HostCheck",
    # reachability and service probes (issue 3)
    "ping": "checks.ping:PingCheck",
    "http": "checks.http:HttpCheck",
    "tcp": "checks.tcp:TcpCheck",
    "redis": "checks.redis:RedisCheck",
    "elasticsearch": "checks.elasticsearch:ElasticsearchCheck",
    "memcached": "checks.memcached:MemcachedCheck",
    "sql": "checks.sql:SqlCheck",
    "nginx": "checks.nginx:NginxCheck",
    "access_log": "checks.access_log:AccessLogCheck",
    # application exceptions and slow queries from files (issue 4)
    "exception_log": "checks.exception_log:ExceptionLogCheck",
    "slow_query_log": "checks.slow_query_log:SlowQueryLogCheck",
}

#: the checks an agent runs when its config lists none (and in `infrawatch up`)
DEFAULT_CHECKS: tuple[dict[str, Any], ...] = (
    {"type": "cpu"},
    {"type": "memory"},
    {"type": "disk"},
    {"type": "network"},
    {"type": "system"},
)


class UnknownCheckType(ConfigError):
    pass


class MissingExtra(ImportError):
    """A check's optional library is not installed; the message names the pip extra."""


def load_check_class(type_name: str, path: str = "type") -> type["Check[Any]"]:
    target = CHECKS.get(type_name)
    if target is None:
        raise UnknownCheckType(path, f"unknown check type {type_name!r}; known types: {', '.join(sorted(CHECKS))}")
    mod_name, _, cls_name = target.partition(":")
    mod = importlib.import_module(mod_name)
    return getattr(mod, cls_name)


def build_check(raw: Any, path: str = "", *, state_dir: str | None = None) -> "Check[Any]":
    """Validate one check's raw config mapping (with `type:`) and construct the check."""
    if not isinstance(raw, dict):
        raise ConfigError(path, "a check must be a mapping with at least a `type:` key")
    tname = raw.get("type")
    tpath = f"{path}.type" if path else "type"
    if not isinstance(tname, str):
        raise ConfigError(tpath, "is required (a check type name)" if tname is None else "must be a string")
    try:
        cls = load_check_class(tname, tpath)
    except MissingExtra as e:
        raise ConfigError(tpath, str(e)) from None
    cfg = from_dict(cls.Config, raw, path)
    return cls(cfg, state_dir=state_dir)


def require(module: str, extra: str, check_type: str) -> Any:
    """Import an optional library or raise MissingExtra naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(
            f"check type {check_type!r} needs the Python package {module!r}: pip install 'infrawatch[{extra}]'"
        ) from None
