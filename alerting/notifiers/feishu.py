"""Feishu / Lark custom bot notifier: an interactive card (or text), `timestamp` + `sign` when a secret is set."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from alerting.notifiers.base import Notification, Notifier, NotifierConfig
from checks.config import ConfigError

#: requests above 20 KB are rejected; keep the card text below this
MAX_TEXT_BYTES = 18_000


@dataclass(frozen=True, kw_only=True)
class FeishuConfig(NotifierConfig):
    #: the bot's webhook URL, e.g. https://open.feishu.cn/open-apis/bot/v2/hook/<token>
    #: (Lark: https://open.larksuite.com/open-apis/bot/v2/hook/<token>)
    url: str
    #: the signature-verification secret; when set, every request carries timestamp and sign
    secret: str | None = None
    msg_type: Literal["interactive", "text"] = "interactive"
    #: open_ids / user_ids to @ (card markdown), "all" for everyone
    at_user_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("url", f"must be an http:// or https:// URL, got {self.url!r}")


def feishu_sign(secret: str, timestamp_s: str) -> str:
    """Feishu's documented scheme: base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))."""
    key = f"{timestamp_s}\n{secret}".encode("utf-8")
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class FeishuNotifier(Notifier):
    TYPE = "feishu"
    Config = FeishuConfig
    DEFAULT_RATE_LIMIT = 20
    config: FeishuConfig

    def payload(self, n: Notification, now: float | None = None) -> dict[str, Any]:
        c = self.config
        r = self.ctx.renderer
        mention = "".join(f"<at id={u}></at>" for u in c.at_user_ids)
        if c.msg_type == "text":
            text = r.render_fit("text.j2", n, self.language, MAX_TEXT_BYTES)
            if c.at_user_ids:
                text += "\n" + "".join(f'<at user_id="{u}"></at>' for u in c.at_user_ids)
            body: dict[str, Any] = {"msg_type": "text", "content": {"text": text}}
        else:
            title = r.render("title.j2", n, self.language)
            md = r.render_fit("markdown.j2", n, self.language, MAX_TEXT_BYTES - len(title.encode()) - len(mention.encode()), body_only=True)
            if mention:
                md += "\n" + mention
            color = "green" if n.status == "resolved" else ("red" if any(a.severity == "critical" for a in n.firing) else "orange")
            if n.test:
                color = "blue"
            body = {
                "msg_type": "interactive",
                "card": {
                    "config": {"wide_screen_mode": True},
                    "header": {"title": {"tag": "plain_text", "content": title[:200]}, "template": color},
                    "elements": [{"tag": "markdown", "content": md}],
                },
            }
        if c.secret:
            ts = str(int(now or time.time()))
            body = {"timestamp": ts, "sign": feishu_sign(c.secret, ts), **body}
        return body

    async def send(self, n: Notification) -> None:
        _status, body = await self.post_json(self.config.url, self.payload(n))
        if isinstance(body, dict):
            code = body.get("code", body.get("StatusCode", 0))
            if code:
                raise self.vendor_error("feishu", int(code), str(body.get("msg", body.get("StatusMessage", ""))))
