"""Notifier registry: YAML `type:` → notifier class, imported lazily; the one place that lists notifier types."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from checks.config import ConfigError, from_dict

if TYPE_CHECKING:
    from alerting.notifiers.base import Notifier, NotifierConfig, NotifierContext

# One line per notifier. Adding one: its module, this line, config/notifiers/<type>.yaml, tests/alerting/test_notify_<type>.py.
NOTIFIERS: dict[str, str] = {
    "email": "alerting.notifiers.email:EmailNotifier",
    "webhook": "alerting.notifiers.webhook:WebhookNotifier",
    "dingtalk": "alerting.notifiers.dingtalk:DingTalkNotifier",
    "wecom": "alerting.notifiers.wecom:WeComNotifier",
    "feishu": "alerting.notifiers.feishu:FeishuNotifier",
}


def load_notifier_class(type_name: str, path: str = "type") -> type["Notifier"]:
    target = NOTIFIERS.get(type_name)
    if target is None:
        raise ConfigError(path, f"unknown notifier type {type_name!r}; known types: {', '.join(sorted(NOTIFIERS))}")
    mod_name, _, cls_name = target.partition(":")
    return getattr(importlib.import_module(mod_name), cls_name)


def parse_notifier_config(raw: Any, path: str) -> "NotifierConfig":
    """Validate one notifier entry (`{type: dingtalk, ...}`); errors name the dotted path."""
    if not isinstance(raw, dict):
        raise ConfigError(path, "a notifier must be a mapping with a `type`")
    t = raw.get("type")
    if not isinstance(t, str):
        raise ConfigError(f"{path}.type", f"is required (one of {', '.join(sorted(NOTIFIERS))})")
    cls = load_notifier_class(t, f"{path}.type")
    return from_dict(cls.Config, raw, path)


def build_notifier(cfg: "NotifierConfig", ctx: "NotifierContext") -> "Notifier":
    return load_notifier_class(cfg.type)(cfg, ctx)
