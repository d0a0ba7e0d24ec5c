"""Agent configuration: frozen dataclasses validated from YAML (unknown keys rejected, errors name file, key, line)."""

from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping
from urllib.parse import urlsplit

from checks import DEFAULT_CHECKS, build_check
from checks.base import CheckConfig
from checks.config import ByteSize, ConfigError, Duration, from_dict, load_yaml_file
from checks.model import MAX_TAG_VALUE_LEN, MAX_TAGS, TAG_KEY_RE

DEFAULT_COLLECTOR_URL = "http://127.0.0.1:9310"
DEFAULT_STATE_DIR = "/var/lib/infrawatch/agent"


def _check_tags(tags: Mapping[str, str], path: str) -> None:
    if len(tags) > MAX_TAGS // 2:
        raise ConfigError(path, f"too many tags ({len(tags)}); at most {MAX_TAGS // 2} leave room for the readings' own tags")
    for k, v in tags.items():
        if not TAG_KEY_RE.match(k) or len(k) > 64:
            raise ConfigError(f"{path}.{k}" if path else k, "tag key must match [a-z_][a-z0-9_]* (at most 64 characters)")
        if len(v) > MAX_TAG_VALUE_LEN:
            raise ConfigError(f"{path}.{k}" if path else k, f"tag value longer than {MAX_TAG_VALUE_LEN} characters")


@dataclass(frozen=True, kw_only=True)
class CollectorTarget:
    """Where and how the agent ships its batches."""

    url: str = DEFAULT_COLLECTOR_URL
    #: bearer token; or read it from token_file (not both)
    token: str | None = None
    token_file: str | None = None
    #: per-request timeout (connect + send + answer)
    timeout: Duration = 10.0
    #: CA bundle for an https:// collector with a private CA
    ca_file: str | None = None
    tls_verify: bool = True

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("url", f"must be an http:// or https:// URL with a host, got {self.url!r}")
        if parts.query or parts.fragment:
            raise ConfigError("url", "must not contain a query or fragment")
        try:
            parts.port
        except ValueError:
            raise ConfigError("url", f"has an invalid port: {self.url!r}") from None
        if self.token is not None and self.token_file is not None:
            raise ConfigError("token_file", "set either token or token_file, not both")
        if self.token is not None and (not self.token or any(c in self.token for c in "\r\n")):
            raise ConfigError("token", "must be a non-empty single-line string")
        if self.timeout <= 0:
            raise ConfigError("timeout", "must be greater than 0")

    def resolve_token(self) -> str | None:
        """The bearer token, reading token_file when set. Raises ConfigError naming the key."""
        if self.token_file is None:
            return self.token
        try:
            tok = Path(self.token_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError("collector.token_file", f"cannot read {self.token_file}: {e.strerror}") from None
        if not tok or "\n" in tok:
            raise ConfigError("collector.token_file", f"{self.token_file} must contain one non-empty line")
        return tok


@dataclass(frozen=True, kw_only=True)
class BufferConfig:
    """The disk buffer under state_dir: payload bytes kept at most; the oldest readings are dropped beyond."""

    max_bytes: ByteSize = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_bytes < 64 * 1024:
            raise ConfigError("max_bytes", "must be at least 64KiB")


@dataclass(frozen=True, kw_only=True)
class ShipConfig:
    """Batching and retry of the shipper."""

    #: readings per batch at most (samples + events)
    max_samples: int = 5000
    #: uncompressed JSON bytes per batch at most (a single larger check run is sent alone)
    max_bytes: ByteSize = 1024 * 1024
    #: ship at least this often when there is anything to ship
    flush_interval: Duration = 5.0
    backoff_initial: Duration = 1.0
    backoff_max: Duration = 300.0
    #: on SIGTERM, try to ship what is buffered for at most this long; the rest stays on disk
    shutdown_timeout: Duration = 10.0

    def __post_init__(self) -> None:
        if self.max_samples < 1:
            raise ConfigError("max_samples", "must be at least 1")
        if self.max_bytes < 1024:
            raise ConfigError("max_bytes", "must be at least 1KiB")
        if self.flush_interval <= 0:
            raise ConfigError("flush_interval", "must be greater than 0")
        if self.backoff_initial <= 0:
            raise ConfigError("backoff_initial", "must be greater than 0")
        if self.backoff_max < self.backoff_initial:
            raise ConfigError("backoff_max", "must not be smaller than backoff_initial")


@dataclass(frozen=True, kw_only=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: auto = JSON under systemd (journal), key=value text on a terminal
    format: Literal["auto", "json", "text"] = "auto"


def _default_host() -> str:
    return socket.gethostname() or "localhost"


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """The whole agent config file.

    `checks` is given as a list of raw mappings (each with `type:`); after construction it holds the
    validated `CheckConfig` objects (every one named, names unique). An empty list means the default
    system checks. `local_ingest` likewise holds the validated config of `agent.ingest` (issue 4).
    """

    collector: CollectorTarget = field(default_factory=CollectorTarget)
    #: host name reported by this agent; every reading gets a `host` tag with it
    host: str = field(default_factory=_default_host)
    #: tags added to every reading (a check's own tags override these; `host` is always the host name)
    tags: dict[str, str] = field(default_factory=dict)
    state_dir: str = DEFAULT_STATE_DIR
    buffer: BufferConfig = field(default_factory=BufferConfig)
    ship: ShipConfig = field(default_factory=ShipConfig)
    checks: list[Any] = field(default_factory=list)
    local_ingest: Any = None
    self_metrics_interval: Duration = 30.0
    log: LogConfig = field(default_factory=LogConfig)
    #: the file this config was loaded from (set by load_agent_config; used for reload on SIGHUP)
    source: str | None = field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        host = self.host.strip() if isinstance(self.host, str) else ""
        if not host or len(host) > 255 or any(c.isspace() for c in host):
            raise ConfigError("host", "must be a non-empty host name without spaces (at most 255 characters)")
        _check_tags(self.tags, "tags")
        if "host" in self.tags:
            raise ConfigError("tags.host", "`host` is set from the `host` option; set that instead")
        if self.self_metrics_interval <= 0:
            raise ConfigError("self_metrics_interval", "must be greater than 0")
        if not self.state_dir:
            raise ConfigError("state_dir", "must not be empty")
        object.__setattr__(self, "checks", tuple(_build_checks(self.checks)))
        object.__setattr__(self, "local_ingest", _build_ingest(self.local_ingest))

    # ------------------------------------------------------------ derived configs

    @classmethod
    def default(
        cls,
        *,
        collector_url: str = DEFAULT_COLLECTOR_URL,
        token: str | None = None,
        state_dir: str = DEFAULT_STATE_DIR,
        interval: float | None = None,
        host: str | None = None,
    ) -> "AgentConfig":
        """The config used without a config file (`infrawatch up`): the default system checks."""
        checks = [dict(c, interval=interval) if interval else dict(c) for c in DEFAULT_CHECKS]
        data: dict[str, Any] = {"collector": {"url": collector_url, "token": token}, "state_dir": state_dir, "checks": checks}
        if host:
            data["host"] = host
        return parse_agent_config(data)

    def for_up(self, *, collector_url: str, token: str | None, state_dir: str) -> "AgentConfig":
        """This config pointed at a local collector (`infrawatch up --agent-config`)."""
        col = dataclasses.replace(self.collector, url=collector_url, token=token, token_file=None)
        return dataclasses.replace(self, collector=col, state_dir=state_dir)

    def only_checks(self, wanted: Iterable[str]) -> "AgentConfig":
        """This config with only the checks whose name or type is in `wanted`."""
        w = set(wanted)
        new = dataclasses.replace(self)
        # set directly: an empty list given to the constructor would mean "the default checks"
        object.__setattr__(new, "checks", tuple(c for c in self.checks if c.name in w or c.type in w))
        object.__setattr__(new, "source", self.source)
        return new

    def check_state_dir(self, check_name: str) -> str:
        """The private state directory of one check (created by the agent, not here)."""
        return str(Path(self.state_dir) / "checks" / check_name)


def _build_checks(items: Iterable[Any]) -> list[CheckConfig]:
    items = list(items)
    if not items:
        items = [dict(c) for c in DEFAULT_CHECKS]
    built: list[tuple[int, CheckConfig, bool]] = []  # (index, config, explicitly named)
    for i, raw in enumerate(items):
        if isinstance(raw, CheckConfig):
            built.append((i, raw, True))
            continue
        try:
            check = build_check(raw, f"checks[{i}]", state_dir=None)
        except ImportError as e:  # a registered module that cannot be imported (broken install)
            raise ConfigError(f"checks[{i}].type", f"check type {raw.get('type')!r} cannot be loaded: {e}") from None
        cfg = check.config
        if cfg.name is not None:
            if not cfg.name or cfg.name.startswith(".") or len(cfg.name) > 128 or not all(c.isalnum() or c in "-_." for c in cfg.name):
                raise ConfigError(
                    f"checks[{i}].name", "must be 1-128 letters, digits, '-', '_' or '.' and not start with '.' (it names a state directory)"
                )
        _check_tags(cfg.tags, f"checks[{i}].tags")
        built.append((i, cfg, cfg.name is not None))
    taken: dict[str, int] = {}
    for i, cfg, named in built:
        if named:
            assert cfg.name is not None
            if cfg.name in taken:
                raise ConfigError(f"checks[{i}].name", f"duplicate check name {cfg.name!r} (also checks[{taken[cfg.name]}])")
            taken[cfg.name] = i
    out: list[CheckConfig] = []
    for i, cfg, named in built:
        if not named:
            name, n = cfg.type, 1
            while name in taken:
                n += 1
                name = f"{cfg.type}-{n}"
            taken[name] = i
            cfg = dataclasses.replace(cfg, name=name)
        out.append(cfg)
    return out


def _build_ingest(raw: Any) -> Any:
    """Hook for local ingest (issue 4): `agent.ingest.Config` validates the `local_ingest:` section."""
    if raw is None or not isinstance(raw, dict):
        if raw is None:
            return None
        if not dataclasses.is_dataclass(raw):
            raise ConfigError("local_ingest", "expected a mapping")
        return raw  # already validated (dataclasses.replace of a built config)
    try:
        from agent import ingest  # type: ignore[attr-defined]
    except ImportError:
        raise ConfigError("local_ingest", "local ingest is not available in this version of the agent") from None
    return from_dict(ingest.Config, raw, "local_ingest")


def parse_agent_config(data: Any, file: str | None = None, lines: Mapping[str, int] | None = None) -> AgentConfig:
    """Validate a parsed YAML document; errors name the file and line when given."""
    try:
        return from_dict(AgentConfig, data)
    except ConfigError as e:
        raise e.located(file, lines) from None


def load_agent_config(path: str | Path) -> AgentConfig:
    """Load and validate an agent config file; every error names the file, the key and its line."""
    data, lines = load_yaml_file(path)
    cfg = parse_agent_config(data, str(path), lines)
    object.__setattr__(cfg, "source", str(path))
    return cfg
