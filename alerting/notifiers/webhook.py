"""Generic webhook notifier: POSTs an Alertmanager-like JSON document (documented in config/notifiers/webhook.yaml).

Payload (version "1"):
  {"version": "1", "source": "infrawatch", "receiver": str, "status": "firing"|"resolved",
   "groupKey": str, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": str,
   "title": str, "text": str, "truncatedAlerts": int,
   "alerts": [{"id", "fingerprint", "status", "severity", "rule", "labels", "annotations",
               "startsAt" (RFC 3339 UTC), "endsAt" (RFC 3339 or null), "value", "threshold", "generatorURL"}]}
With `secret` set, header X-Infrawatch-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from alerting.notifiers.base import Notification, Notifier, NotifierConfig, NotifyError
from alerting.render import sort_alerts
from checks.config import ConfigError


@dataclass(frozen=True, kw_only=True)
class WebhookConfig(NotifierConfig):
    url: str
    #: extra HTTP headers
    headers: dict[str, str] = field(default_factory=dict)
    #: sent as `Authorization: Bearer ...`
    bearer_token: str | None = None
    #: signs the body: X-Infrawatch-Signature: sha256=hex(HMAC-SHA256(secret, body))
    secret: str | None = None
    #: at most this many alerts per message (0: all); the rest is counted in truncatedAlerts
    max_alerts: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("url", f"must be an http:// or https:// URL, got {self.url!r}")
        if self.max_alerts < 0:
            raise ConfigError("max_alerts", "must not be negative")


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _num(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


class WebhookNotifier(Notifier):
    TYPE = "webhook"
    Config = WebhookConfig
    config: WebhookConfig

    def payload(self, n: Notification) -> dict[str, Any]:
        r = self.ctx.renderer
        alerts = sort_alerts(n.alerts)
        truncated = 0
        if self.config.max_alerts and len(alerts) > self.config.max_alerts:
            truncated = len(alerts) - self.config.max_alerts
            alerts = alerts[: self.config.max_alerts]
        out_alerts = []
        for a in alerts:
            out_alerts.append({
                "id": a.fingerprint,
                "fingerprint": a.fingerprint,
                "status": a.state,
                "severity": a.severity,
                "rule": a.rule,
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.firing_since or a.active_since),
                "endsAt": rfc3339(a.resolved_at),
                "value": _num(a.value),
                "threshold": _num(a.threshold),
                "generatorURL": f"{r.public_url}/api/v1/alerts/{a.fingerprint}" if r.public_url else "",
            })
        return {
            "version": "1",
            "source": "infrawatch",
            "receiver": n.receiver,
            "status": n.status,
            "groupKey": n.group_key,
            "groupLabels": n.group_labels,
            "commonLabels": n.common_labels(),
            "commonAnnotations": n.common_annotations(),
            "externalURL": r.public_url,
            "title": r.render("title.j2", n, self.language),
            "text": r.render_fit("text.j2", n, self.language, 64 * 1024),
            "truncatedAlerts": truncated,
            "test": n.test,
            "alerts": out_alerts,
        }

    async def send(self, n: Notification) -> None:
        body = self.payload(n)
        headers = dict(self.config.headers)
        if self.config.bearer_token:
            headers["Authorization"] = f"Bearer {self.config.bearer_token}"
        if self.config.secret:
            raw = orjson.dumps(body)
            sig = hmac.new(self.config.secret.encode(), raw, hashlib.sha256).hexdigest()
            headers["X-Infrawatch-Signature"] = f"sha256={sig}"
        await self.post_json(self.config.url, body, headers)


__all__ = ["WebhookNotifier", "WebhookConfig", "NotifyError"]
