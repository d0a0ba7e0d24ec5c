"""DingTalk custom robot notifier: markdown message, `timestamp` + `sign` (HMAC-SHA256) when a secret is set, @ mobiles."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote_plus, urlencode, urlsplit

from alerting.notifiers.base import Notification, Notifier, NotifierConfig
from checks.config import ConfigError

#: the robot rejects bodies above 20,000 bytes; leave room for the JSON around the text
MAX_TEXT_BYTES = 18_000


@dataclass(frozen=True, kw_only=True)
class DingTalkConfig(NotifierConfig):
    #: the robot's access_token (from its webhook URL)
    access_token: str
    #: the 加签 secret (SEC...); when set, every request carries timestamp and sign
    secret: str | None = None
    #: the send endpoint (change only for a proxy or tests)
    url: str = "https://oapi.dingtalk.com/robot/send"
    msgtype: Literal["markdown", "text"] = "markdown"
    #: mobiles to @ in the group
    at_mobiles: list[str] = field(default_factory=list)
    at_all: bool = False
    #: the robot's custom keyword (关键词), added to messages that lack it
    keyword: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.access_token.strip():
            raise ConfigError("access_token", "must not be empty")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("url", f"must be an http:// or https:// URL, got {self.url!r}")


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """DingTalk's documented scheme: base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")), URL-encoded."""
    string_to_sign = f"{timestamp_ms}\n{secret}"
    digest = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


class DingTalkNotifier(Notifier):
    TYPE = "dingtalk"
    Config = DingTalkConfig
    DEFAULT_RATE_LIMIT = 20
    config: DingTalkConfig

    def request_url(self, now: float | None = None) -> str:
        c = self.config
        q = f"access_token={quote_plus(c.access_token)}"
        if c.secret:
            ts = str(int((now or time.time()) * 1000))
            q += "&" + urlencode({"timestamp": ts}) + "&sign=" + dingtalk_sign(c.secret, ts)
        sep = "&" if "?" in c.url else "?"
        return f"{c.url}{sep}{q}"

    def payload(self, n: Notification) -> dict[str, Any]:
        c = self.config
        r = self.ctx.renderer
        suffix = ""
        if c.at_mobiles:
            suffix = "\n\n" + " ".join(f"@{m}" for m in c.at_mobiles)
        if c.keyword:
            suffix += f"\n\n{c.keyword}"
        limit = MAX_TEXT_BYTES - len(suffix.encode())
        title = r.render("title.j2", n, self.language)
        if c.keyword and c.keyword not in title:
            title = f"{c.keyword} {title}"
        at = {"atMobiles": list(c.at_mobiles), "isAtAll": c.at_all}
        if c.msgtype == "markdown":
            text = r.render_fit("markdown.j2", n, self.language, limit) + suffix
            return {"msgtype": "markdown", "markdown": {"title": title[:100], "text": text}, "at": at}
        text = r.render_fit("text.j2", n, self.language, limit) + suffix
        return {"msgtype": "text", "text": {"content": text}, "at": at}

    async def send(self, n: Notification) -> None:
        _status, body = await self.post_json(self.request_url(), self.payload(n))
        if isinstance(body, dict):
            code = body.get("errcode", 0)
            if code:
                raise self.vendor_error("dingtalk", int(code), str(body.get("errmsg", "")))
