"""Zabbix sink configuration (trapper, TLS, API) and the transport: TLS contexts and a fast AsyncSender."""

from __future__ import annotations

import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from checks.config import ConfigError, Duration
from collector.sinks.zabbix_keys import DEFAULT_KEY_TAGS


@dataclass(frozen=True, kw_only=True)
class ZabbixTLSConfig:
    """TLS between the sink and the Zabbix server/proxy trapper port (like zabbix_sender's --tls-* options)."""

    connect: Literal["unencrypted", "psk", "cert"] = "unencrypted"
    psk_identity: str = ""
    psk_file: str = ""  # file holding the PSK as hex (as for zabbix_agentd's TLSPSKFile)
    ca_file: str = ""  # CA that signed the server's certificate (cert mode)
    cert_file: str = ""  # our client certificate (cert mode)
    key_file: str = ""
    verify_hostname: bool = False  # also match the server certificate against `server` (CA check is always on)

    def __post_init__(self) -> None:
        if self.connect == "psk":
            if not self.psk_identity:
                raise ConfigError("psk_identity", "is required when connect is psk")
            if not self.psk_file:
                raise ConfigError("psk_file", "is required when connect is psk")
        if self.connect == "cert":
            for name in ("ca_file", "cert_file", "key_file"):
                if not getattr(self, name):
                    raise ConfigError(name, "is required when connect is cert")


@dataclass(frozen=True, kw_only=True)
class ZabbixApiConfig:
    """Zabbix JSON-RPC API used to provision hosts and items (optional)."""

    url: str  # e.g. https://zabbix.example.com/api_jsonrpc.php
    user: str = ""
    password: str = ""
    password_file: str = ""
    token: str = ""  # API token (5.4+) instead of user/password
    timeout: Duration = 10.0
    verify_tls: bool = True
    ca_file: str = ""
    provision: bool = True  # create hosts and items; false: only look items up
    host_groups: list[str] = field(default_factory=lambda: ["infrawatch"])
    templates: list[str] = field(default_factory=lambda: ["infrawatch"])
    template_file: str = ""  # import this file when the "infrawatch" template is missing
    link_templates_to_existing: bool = True
    host_tags: dict[str, str] = field(default_factory=dict)
    host_macros: dict[str, str] = field(default_factory=dict)
    inventory: bool = True
    create_missing_items: bool = True  # trapper items for metrics the template does not define
    retry_interval: Duration = 60.0  # longest wait before trying an unavailable API again
    check_unsupported_interval: Duration = 60.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError("url", f"must be an http(s) URL of api_jsonrpc.php, got {self.url!r}")
        if not self.token and not self.user:
            raise ConfigError("user", "user (with password or password_file) or token is required")
        if self.token and self.user:
            raise ConfigError("token", "give either token or user/password, not both")

    def password_value(self) -> str:
        if self.password_file:
            return Path(self.password_file).read_text(encoding="utf-8").strip()
        return self.password


@dataclass(frozen=True, kw_only=True)
class ZabbixSinkConfig:
    type: Literal["zabbix"] = "zabbix"
    name: str = "zabbix"
    server: str = "127.0.0.1"  # Zabbix server or proxy (trapper port)
    port: int = 10051
    timeout: Duration = 10.0
    chunk_size: int = 1000  # values per trapper request
    in_flight: int = 4  # trapper requests in flight at once
    compression: bool = False
    host_prefix: str = ""
    host_map: dict[str, str] = field(default_factory=dict)  # infrawatch host → Zabbix host name
    key_tags: list[str] = field(default_factory=lambda: list(DEFAULT_KEY_TAGS))
    include: list[str] = field(default_factory=list)  # metric name globs; empty: every metric
    # app.sql.* is per SQL fingerprint (unbounded, long text): no Zabbix key for it by default
    exclude: list[str] = field(default_factory=lambda: ["app.sql.*"])
    heartbeat: bool = True
    # the collector's exceptions extension already emits app.exceptions.count per agent host and module
    exception_counts_from_events: bool = False
    hold: Duration = 300.0  # how long values for a not-yet-existing item are held back
    hold_max_values: int = 200_000
    # LLD entries (filesystems, interfaces, targets, ...) no sample named for this long are left out of
    # the next payload, so Zabbix removes them after the rule's lifetime; 0 keeps them forever
    lld_forget_after: Duration = 86400.0
    retry_held_every: Duration = 2.0
    tls: ZabbixTLSConfig = field(default_factory=ZabbixTLSConfig)
    api: ZabbixApiConfig | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError("port", f"must be 1-65535, got {self.port}")
        if not 1 <= self.chunk_size <= 100_000:
            raise ConfigError("chunk_size", "must be 1-100000")
        if not 1 <= self.in_flight <= 64:
            raise ConfigError("in_flight", "must be 1-64")


# ---------------------------------------------------------------- transport


def tls_context_factory(tls: ZabbixTLSConfig, server: str) -> Any:
    """The `ssl_context` callable AsyncSender wants, or None for unencrypted."""
    if tls.connect == "unencrypted":
        return None
    if tls.connect == "cert":
        ctx = ssl.create_default_context(cafile=tls.ca_file)
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        ctx.check_hostname = tls.verify_hostname
        return lambda *_a, **_k: ctx
    psk = bytes.fromhex(Path(tls.psk_file).read_text(encoding="ascii").strip())
    identity = tls.psk_identity
    if sys.version_info >= (3, 13):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    else:
        try:
            import sslpsk3
        except ImportError:
            raise ConfigError("tls.connect", "TLS with PSK needs Python 3.13+ or the sslpsk3 package "
                              "(pip install sslpsk3)") from None
        ctx = sslpsk3.SSLPSKContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("PSK")
    ctx.set_psk_client_callback(lambda hint: (identity, psk))
    return lambda *_a, **_k: ctx


_FAST_SENDER: Any = None


def fast_sender_class() -> Any:
    """zabbix_utils' AsyncSender (connection, TLS, cluster failover, answer parsing) with a cheaper packet builder.

    zabbix_utils 2.0 builds every packet through ZabbixProtocol.create_packet, which formats the
    whole request for a debug log line (textwrap.shorten over ~100 kB) even when debug logging is
    off: about 45 ms per 1,000 values, most of the sender's CPU. This subclass builds the same
    ZBXD packet with orjson and hands it to the library's own send path.
    """
    global _FAST_SENDER
    if _FAST_SENDER is not None:
        return _FAST_SENDER
    import struct
    import zlib

    from zabbix_utils import AsyncSender
    from zabbix_utils.types import TrapperResponse

    class FastSender(AsyncSender):  # type: ignore[misc, valid-type]
        async def send_payload(self, payload: dict[str, Any]) -> Any:
            body = orjson.dumps(payload)
            flags, reserved = 0x01, 0
            if self.compression:
                flags |= 0x02
                reserved = len(body)
                body = zlib.compress(body)
            packet = struct.pack("<4sBII", b"ZBXD", flags, len(body), reserved) + body
            result = TrapperResponse()
            for cluster in self.clusters:
                _node, response = await self._AsyncSender__send_to_cluster(cluster, packet)
                result.add(response, 1)
                break  # one server or proxy (cluster failover happens inside)
            return result

    _FAST_SENDER = FastSender
    return FastSender
