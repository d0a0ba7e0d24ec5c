"""Collector configuration: YAML → typed dataclasses (listen, tokens, store, sinks, extensions, log)."""

from __future__ import annotations

import copy
import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from checks.config import ByteSize, ConfigError, Duration, field_alias, from_dict, load_yaml_file

log = logging.getLogger("collector.config")

DEFAULT_LISTEN = "127.0.0.1:9310"

#: keys of a `sinks:` entry that belong to the sink runner, not to the sink itself
RUNNER_KEYS = ("queue_max_bytes", "backoff_initial", "backoff_max", "max_batches_per_send")


@dataclass
class AgentToken:
    """One agent's bearer token. name `*` accepts the token for any agent name."""

    name: str
    token: str

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must not be empty (use '*' for any agent)")
        if len(self.token) < 8:
            raise ConfigError("token", "must be at least 8 characters")


@dataclass
class Retention:
    raw: Duration = 7 * 86400.0
    m1: Duration = field_alias("1m", default=90 * 86400.0)
    h1: Duration = field_alias("1h", default=2 * 365 * 86400.0)
    events: Duration = 30 * 86400.0
    batch_ids: Duration = 7 * 86400.0

    def __post_init__(self) -> None:
        for k, v in (("raw", self.raw), ("1m", self.m1), ("1h", self.h1), ("events", self.events), ("batch_ids", self.batch_ids)):
            if v <= 0:
                raise ConfigError(k, "must be greater than 0")


@dataclass
class StoreConfig:
    retention: Retention = field(default_factory=Retention)
    #: 0 = unbounded; otherwise the used size of the database (+WAL) is kept under this
    max_disk_bytes: ByteSize = 0
    #: SQLite synchronous mode: full = fsync every group commit (survives power loss), normal = survives crashes
    synchronous: Literal["full", "normal"] = "full"
    #: at most this many samples per write transaction (group commit)
    group_commit_samples: int = 50_000
    #: ingest answers 503 + Retry-After when more samples than this wait for the writer
    max_pending_samples: int = 1_000_000
    #: how often rollups, retention and the disk bound run
    maintenance_interval: Duration = 30.0
    #: a query over a range longer than this (without a step) reads 1-minute rollups
    raw_max_range: Duration = 6 * 3600.0
    #: ... longer than this reads 1-hour rollups
    rollup_1m_max_range: Duration = 8 * 86400.0

    def __post_init__(self) -> None:
        if self.group_commit_samples < 1:
            raise ConfigError("group_commit_samples", "must be at least 1")
        if self.max_pending_samples < 1000:
            raise ConfigError("max_pending_samples", "must be at least 1000")
        if self.maintenance_interval < 1:
            raise ConfigError("maintenance_interval", "must be at least 1s")


@dataclass
class HostsConfig:
    #: a host not heard from for this long is `stale`
    stale_after: Duration = 60.0
    #: ... and for this long `down`
    down_after: Duration = 300.0


@dataclass
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "text"] = "auto"


@dataclass
class SinkSpec:
    """A configured sink: its class, its validated config and the runner options."""

    type: str
    name: str
    cls: Any
    config: Any
    queue_max_bytes: int = 256 * 1024 * 1024
    backoff_initial: float = 0.5
    backoff_max: float = 60.0
    max_batches_per_send: int = 50


@dataclass
class _RunnerOpts:
    queue_max_bytes: ByteSize = 256 * 1024 * 1024
    backoff_initial: Duration = 0.5
    backoff_max: Duration = 60.0
    max_batches_per_send: int = 50


@dataclass
class CollectorConfig:
    listen: str = DEFAULT_LISTEN
    data_dir: str = "/var/lib/infrawatch/collector"
    agents: list[AgentToken] = field(default_factory=list)
    #: one token accepted for every agent name (fleets); same as `agents: [{name: '*', token: ...}]`
    shared_token: str | None = None
    read_tokens: list[str] = field(default_factory=list)
    admin_tokens: list[str] = field(default_factory=list)
    max_body_bytes: ByteSize = 16 * 1024 * 1024
    store: StoreConfig = field(default_factory=StoreConfig)
    hosts: HostsConfig = field(default_factory=HostsConfig)
    public_url: str | None = None
    #: how often the collector records its own metrics (collector.*)
    self_metrics_interval: Duration = 10.0
    #: the host name internal samples are stored under (default: this machine's name)
    hostname: str | None = None
    log: LogConfig = field(default_factory=LogConfig)
    # filled by load_collector_config (not YAML keys of the dataclass)
    sinks: list[SinkSpec] = field(default_factory=list, init=False)
    extensions: dict[str, tuple[Any, Any]] = field(default_factory=dict, init=False)
    config_file: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or not (0 <= int(port) < 65536):
            raise ConfigError("listen", f"must be HOST:PORT, got {self.listen!r}")
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes", "must be at least 1KiB")
        if self.shared_token is not None and len(self.shared_token) < 8:
            raise ConfigError("shared_token", "must be at least 8 characters")

    # ------------------------------------------------------------ derived

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def agent_tokens(self) -> dict[str, set[str]]:
        """token → agent names it may send as (`*` = any)."""
        out: dict[str, set[str]] = {}
        for a in self.agents:
            out.setdefault(a.token, set()).add(a.name)
        if self.shared_token:
            out.setdefault(self.shared_token, set()).add("*")
        return out

    @classmethod
    def default(cls, *, data_dir: str, listen: str = DEFAULT_LISTEN, local_token: str) -> "CollectorConfig":
        """The `infrawatch up` collector: one token for any agent, read endpoints open on loopback, and
        alerting with the default rule set (alerts visible in the API and console; no receivers)."""
        cfg = cls(listen=listen, data_dir=data_dir, agents=[AgentToken("*", local_token)])
        cfg.extensions = _extensions({"alerting": {}}, None, None)
        return cfg

    def for_up(self, *, data_dir: str, listen: str, local_token: str) -> "CollectorConfig":
        new = copy.copy(self)
        new.data_dir = data_dir
        new.listen = listen
        new.agents = [*self.agents, AgentToken("*", local_token)]
        return new


# ---------------------------------------------------------------- loading


def _sinks(raw: Any, file: str | None, lines: dict[str, int] | None) -> list[SinkSpec]:
    from collector.sinks import load_sink_class

    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("sinks", "expected a list of sinks").located(file, lines)
    out: list[SinkSpec] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        p = f"sinks[{i}]"
        try:
            if not isinstance(item, dict):
                raise ConfigError(p, "expected a mapping with a `type:`")
            if "type" not in item:
                raise ConfigError(f"{p}.type", "is required")
            t = item["type"]
            if not isinstance(t, str):
                raise ConfigError(f"{p}.type", "must be a string")
            cls = load_sink_class(t, f"{p}.type")
            runner_raw = {k: item[k] for k in RUNNER_KEYS if k in item}
            sink_raw = {k: v for k, v in item.items() if k not in RUNNER_KEYS}
            opts = from_dict(_RunnerOpts, runner_raw, p)
            scfg = from_dict(cls.Config, sink_raw, p)
            name = getattr(scfg, "name", None) or item.get("name") or t
            if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
                raise ConfigError(f"{p}.name", "must be letters, digits, - and _ only")
            if name in names:
                raise ConfigError(f"{p}.name", f"duplicate sink name {name!r}; give each sink a distinct `name:`")
            names.add(name)
            out.append(SinkSpec(t, name, cls, scfg, opts.queue_max_bytes, opts.backoff_initial, opts.backoff_max, opts.max_batches_per_send))
        except ConfigError as e:
            raise e.located(file, lines) from None
    return out


def _extensions(raw: dict[str, Any], file: str | None, lines: dict[str, int] | None) -> dict[str, tuple[Any, Any]]:
    from collector.extension import EXTENSIONS

    out: dict[str, tuple[Any, Any]] = {}
    for name, target in EXTENSIONS.items():
        present = name in raw
        mod_name, _, cls_name = target.partition(":")
        try:
            cls = getattr(importlib.import_module(mod_name), cls_name)
        except (ImportError, AttributeError) as e:
            if present:
                raise ConfigError(name, f"extension {name!r} is not available: {e}").located(file, lines) from None
            continue
        if not present and not getattr(cls, "ALWAYS_ON", False):
            continue
        try:
            conf = cls.validate(raw.get(name) if present else {}, name)
        except ConfigError as e:
            raise e.located(file, lines) from None
        except (ValueError, TypeError) as e:
            raise ConfigError(name, str(e)).located(file, lines) from None
        out[name] = (cls, conf)
    return out


def collector_config_from_dict(data: Any, file: str | None = None, lines: dict[str, int] | None = None) -> CollectorConfig:
    from collector.extension import EXTENSIONS

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("", "a collector config must be a mapping", file=file)
    data = dict(data)
    sinks_raw = data.pop("sinks", None)
    ext_raw = {k: data.pop(k) for k in list(data) if k in EXTENSIONS}
    try:
        cfg = from_dict(CollectorConfig, data)
    except ConfigError as e:
        raise e.located(file, lines) from None
    cfg.sinks = _sinks(sinks_raw, file, lines)
    cfg.extensions = _extensions(ext_raw, file, lines)
    cfg.config_file = file
    return cfg


def load_collector_config(path: str | Path) -> CollectorConfig:
    """Load and validate a collector YAML file; errors name the file, key and line."""
    data, lines = load_yaml_file(path)
    return collector_config_from_dict(data, str(path), lines)


def runtime_dirs(cfg: CollectorConfig) -> tuple[Path, Path]:
    d = Path(cfg.data_dir)
    return d, d / "sinks"


__all__ = ["CollectorConfig", "load_collector_config", "collector_config_from_dict", "SinkSpec"]
