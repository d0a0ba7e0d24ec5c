"""WeCom (企业微信) group robot notifier: `key`, markdown or text, @ by mobile (mentioned_mobile_list) or user id."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote_plus, urlsplit

from alerting.notifiers.base import Notification, Notifier, NotifierConfig
from checks.config import ConfigError

#: the robot's documented limits, in UTF-8 bytes
MARKDOWN_MAX_BYTES = 4096
TEXT_MAX_BYTES = 2048


@dataclass(frozen=True, kw_only=True)
class WeComConfig(NotifierConfig):
    #: the robot's key (from its webhook URL)
    key: str
    #: the send endpoint (change only for a proxy or tests)
    url: str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    msgtype: Literal["markdown", "text"] = "markdown"
    #: mobiles to @ (WeCom honours them only in text messages: with markdown a short text message carrying the mentions follows)
    mentioned_mobile_list: list[str] = field(default_factory=list)
    #: user ids to @ ("@all" for everyone)
    mentioned_list: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.key.strip():
            raise ConfigError("key", "must not be empty")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("url", f"must be an http:// or https:// URL, got {self.url!r}")


class WeComNotifier(Notifier):
    TYPE = "wecom"
    Config = WeComConfig
    DEFAULT_RATE_LIMIT = 20
    config: WeComConfig

    def request_url(self) -> str:
        sep = "&" if "?" in self.config.url else "?"
        return f"{self.config.url}{sep}key={quote_plus(self.config.key)}"

    def payloads(self, n: Notification) -> list[dict[str, Any]]:
        c = self.config
        r = self.ctx.renderer
        if c.msgtype == "text":
            text = r.render_fit("text.j2", n, self.language, TEXT_MAX_BYTES)
            body: dict[str, Any] = {"content": text}
            if c.mentioned_mobile_list:
                body["mentioned_mobile_list"] = list(c.mentioned_mobile_list)
            if c.mentioned_list:
                body["mentioned_list"] = list(c.mentioned_list)
            return [{"msgtype": "text", "text": body}]
        mention = "".join(f"<@{u}>" for u in c.mentioned_list if u != "@all")
        limit = MARKDOWN_MAX_BYTES - len(mention.encode())
        content = r.render_fit("markdown.j2", n, self.language, limit) + mention
        out: list[dict[str, Any]] = [{"msgtype": "markdown", "markdown": {"content": content}}]
        if c.mentioned_mobile_list or "@all" in c.mentioned_list:
            title = r.render("title.j2", n, self.language)
            t: dict[str, Any] = {"content": title[:500]}
            if c.mentioned_mobile_list:
                t["mentioned_mobile_list"] = list(c.mentioned_mobile_list)
            if "@all" in c.mentioned_list:
                t["mentioned_list"] = ["@all"]
            out.append({"msgtype": "text", "text": t})
        return out

    async def send(self, n: Notification) -> None:
        for p in self.payloads(n):
            _status, body = await self.post_json(self.request_url(), p)
            if isinstance(body, dict):
                code = body.get("errcode", 0)
                if code:
                    raise self.vendor_error("wecom", int(code), str(body.get("errmsg", "")))
