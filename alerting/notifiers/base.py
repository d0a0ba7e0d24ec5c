"""The notifier contract: a config dataclass, `send(notification)` that formats and sends, and NotifyError(retryable)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import aiohttp
import orjson

from alerting.notifiers.status import http_retryable, vendor_retryable
from checks.config import ConfigError, Duration
from checks.runtime.retry import parse_retry_after

if TYPE_CHECKING:
    from alerting.render import Renderer
    from alerting.state import Alert


class NotifyError(Exception):
    """A delivery failed. `retryable` says whether sending the same message again may succeed;
    `retry_after` (seconds) is the receiver's hint; `status`/`code` what it answered."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.code = code


@dataclass(slots=True)
class Notification:
    """What a notifier formats: one group's alerts for one receiver."""

    receiver: str
    status: Literal["firing", "resolved"]
    alerts: list["Alert"]
    group_key: str = ""
    group_labels: dict[str, str] = field(default_factory=dict)
    #: several queued notifications merged into one because of the receiver's rate limit
    merged: int = 1
    #: a test message (`infrawatch notify test`)
    test: bool = False
    #: sent to an escalation receiver because nobody acknowledged in time
    escalated: bool = False

    @property
    def firing(self) -> list["Alert"]:
        return [a for a in self.alerts if a.state == "firing"]

    @property
    def resolved(self) -> list["Alert"]:
        return [a for a in self.alerts if a.state == "resolved"]

    def common_labels(self) -> dict[str, str]:
        if not self.alerts:
            return {}
        common = dict(self.alerts[0].labels)
        for a in self.alerts[1:]:
            for k in list(common):
                if a.labels.get(k) != common[k]:
                    del common[k]
        return common

    def common_annotations(self) -> dict[str, str]:
        if not self.alerts:
            return {}
        common = dict(self.alerts[0].annotations)
        for a in self.alerts[1:]:
            for k in list(common):
                if a.annotations.get(k) != common[k]:
                    del common[k]
        return common


@dataclass(frozen=True, kw_only=True)
class NotifierConfig:
    """Options every notifier takes."""

    type: str
    #: shown in the delivery log (default: the type)
    name: str | None = None
    #: also notify when alerts resolve
    send_resolved: bool = True
    #: message language (zh-CN or en); default: alerting.language
    language: Literal["zh-CN", "en"] | None = None
    #: messages per minute at most (robots allow about 20); beyond it messages queue and merge
    rate_limit: int | None = None
    #: per-request timeout
    timeout: Duration = 10.0

    def __post_init__(self) -> None:
        if self.rate_limit is not None and self.rate_limit < 1:
            raise ConfigError("rate_limit", "must be at least 1 message per minute")
        if self.timeout <= 0:
            raise ConfigError("timeout", "must be greater than 0")


class NotifierContext:
    """What the alerting service hands a notifier: the template renderer and a shared HTTP session."""

    def __init__(self, renderer: "Renderer", session_factory: Any = None) -> None:
        self.renderer = renderer
        self._session: aiohttp.ClientSession | None = None
        self._factory = session_factory

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if self._factory is not None:
                self._session = self._factory()
            else:
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=32, ttl_dns_cache=300), json_serialize=lambda o: orjson.dumps(o).decode()
                )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


class Notifier:
    """Formats a Notification for one channel and sends it; raises NotifyError on failure.

    Notifiers never retry or sleep: dispatch.py owns retries, backoff and rate limiting."""

    TYPE: ClassVar[str] = ""
    Config: ClassVar[type[NotifierConfig]] = NotifierConfig
    #: messages per minute when the config does not say (None: unlimited)
    DEFAULT_RATE_LIMIT: ClassVar[int | None] = None

    def __init__(self, config: NotifierConfig, ctx: NotifierContext) -> None:
        self.config = config
        self.ctx = ctx

    @property
    def name(self) -> str:
        return self.config.name or self.config.type

    @property
    def rate_limit(self) -> int | None:
        return self.config.rate_limit if self.config.rate_limit is not None else self.DEFAULT_RATE_LIMIT

    @property
    def language(self) -> str:
        return self.config.language or self.ctx.renderer.language

    async def send(self, n: Notification) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Release resources (the shared HTTP session is closed by the service)."""

    # ---- helpers for HTTP notifiers
    async def post_json(self, url: str, payload: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST JSON; returns (status, parsed JSON or text). Transport errors and non-2xx statuses
        raise NotifyError classified by the shared status table."""
        session = await self.ctx.session()
        body = orjson.dumps(payload)
        hdrs = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        try:
            async with asyncio.timeout(self.config.timeout):
                async with session.post(url, data=body, headers=hdrs) as resp:
                    raw = await resp.read()
                    status = resp.status
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except TimeoutError:
            raise NotifyError(f"no answer from {redact_url(url)} within {self.config.timeout:g}s", retryable=True) from None
        except aiohttp.ClientError as e:
            raise NotifyError(f"cannot reach {redact_url(url)}: {type(e).__name__}: {e}", retryable=True) from None
        try:
            parsed: Any = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = raw.decode("utf-8", "replace")
        if not 200 <= status <= 299:
            text = parsed if isinstance(parsed, str) else orjson.dumps(parsed).decode() if parsed is not None else ""
            raise NotifyError(
                f"{redact_url(url)} answered HTTP {status}: {text[:300]}",
                retryable=http_retryable(status),
                retry_after=retry_after,
                status=status,
            )
        return status, parsed

    def vendor_error(self, vendor: str, code: int, message: str) -> NotifyError:
        retryable = vendor_retryable(vendor, code)
        return NotifyError(f"{vendor} error {code}: {message}", retryable=retryable, code=code, retry_after=60.0 if retryable else None)


def redact_url(url: str) -> str:
    """A URL without its query and long path tokens (robot keys and tokens live there)."""
    base, sep, _q = url.partition("?")
    scheme, dsep, rest = base.partition("://")
    parts = rest.split("/")
    parts = [p if i == 0 or len(p) < 20 else p[:4] + "…" for i, p in enumerate(parts)]
    return scheme + dsep + "/".join(parts) + ("?…" if sep else "")


def utf8_len(s: str) -> int:
    return len(s.encode("utf-8"))
