"""Notifiers against real servers on loopback: signatures, payload shapes, length limits, languages, and the shared retry table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from alerting.config import parse_alerting_config
from alerting.notifiers import NOTIFIERS, build_notifier, parse_notifier_config
from alerting.notifiers.base import Notification, NotifierContext, NotifyError
from alerting.notifiers.status import RETRYABLE_HTTP, VENDOR_CODES, http_retryable
from alerting.render import Renderer
from alerting.state import Alert
from tests.alerting.conftest import DING_SECRET, FEISHU_SECRET, WEBHOOK_SECRET, Receiver

ROOT = Path(__file__).resolve().parents[2]
STATUSES = [400, 401, 403, 404, 408, 413, 425, 429, 500, 502, 503, 504]


def mk_alert(i: int = 0, state: str = "firing", severity: str = "critical", **labels: str) -> Alert:
    now = time.time()
    lb = {"alertname": "payment_exception_burst", "host": f"app{i:03d}", "module": "payment", "severity": severity, **labels}
    return Alert(f"{i:016x}", "payment_exception_burst", lb, state, severity, {"summary": ""},
                 {"type": "exceptions", "window": 300, "op": ">", "unit": "count", "metric": "app.exception"},
                 150.0, 100.0, now - 60, now - 30, now if state == "resolved" else None, now)


def notification(n: int = 1, status: str = "firing") -> Notification:
    return Notification("ops", status, [mk_alert(i, "resolved" if status == "resolved" else "firing") for i in range(n)], "g", {"module": "payment"})


def make(cfg: dict[str, Any], lang: str = "zh-CN") -> Any:
    return build_notifier(parse_notifier_config(cfg, "n"), NotifierContext(Renderer(lang, public_url="http://collector:8080")))


def configs(recv: Receiver) -> dict[str, dict[str, Any]]:
    return {
        "webhook": {"type": "webhook", "url": recv.url + "/webhook", "secret": WEBHOOK_SECRET},
        "dingtalk": {"type": "dingtalk", "url": recv.url + "/dingtalk", "access_token": "tok123", "secret": DING_SECRET,
                     "at_mobiles": ["13800138000"]},
        "wecom": {"type": "wecom", "url": recv.url + "/wecom", "key": "key-abc", "mentioned_mobile_list": ["13800138000"]},
        "feishu": {"type": "feishu", "url": recv.url + "/feishu/hook/abc", "secret": FEISHU_SECRET},
    }


def test_every_notifier_has_module_example_and_test() -> None:
    """Adding a notifier touches its module, one registry line, config/notifiers/<type>.yaml and a test here."""
    import yaml

    for t in NOTIFIERS:
        ex = ROOT / "config" / "notifiers" / f"{t}.yaml"
        assert ex.exists(), f"missing example {ex}"
        doc = yaml.safe_load(ex.read_text())
        cfg = parse_alerting_config(doc["alerting"])
        assert any(n.type == t for r in cfg.receivers for n in r.parsed), t
        src = (Path(__file__).parent / "test_notifiers.py").read_text() + (Path(__file__).parent / "test_email.py").read_text()
        assert f'"{t}"' in src


async def test_dingtalk_signed_markdown_with_at(receiver: Receiver) -> None:
    n = make(configs(receiver)["dingtalk"])
    await n.send(notification())
    (r,) = receiver.of("dingtalk")
    assert r.signed_ok is True and r.query["access_token"] == "tok123"
    body = r.json
    assert body["msgtype"] == "markdown"
    assert body["at"] == {"atMobiles": ["13800138000"], "isAtAll": False}
    text = body["markdown"]["text"]
    assert "@13800138000" in text  # DingTalk needs the @mobile in the text as well
    assert "[严重]" in body["markdown"]["title"] and "payment_exception_burst" in text
    assert "模块 payment" in text and "5分钟内发生 150 次异常" in text
    assert "http://collector:8080/api/v1/alerts/0000000000000000" in text


async def test_dingtalk_wrong_secret_is_not_retryable(receiver: Receiver) -> None:
    n = make({**configs(receiver)["dingtalk"], "secret": "SECwrong"})
    with pytest.raises(NotifyError) as ei:
        await n.send(notification())
    assert ei.value.retryable is False and ei.value.code == 310000 and "sign not match" in str(ei.value)
    assert receiver.of("dingtalk")[0].signed_ok is False


async def test_wecom_markdown_then_text_with_mobiles(receiver: Receiver) -> None:
    n = make(configs(receiver)["wecom"], lang="en")
    await n.send(notification(2))
    md, txt = receiver.of("wecom")
    assert md.query["key"] == "key-abc"
    assert md.json["msgtype"] == "markdown" and "CRITICAL" in md.json["markdown"]["content"]
    assert "150 exceptions within 5 min" in md.json["markdown"]["content"]
    assert txt.json["msgtype"] == "text" and txt.json["text"]["mentioned_mobile_list"] == ["13800138000"]
    n2 = make({**configs(receiver)["wecom"], "msgtype": "text", "mentioned_mobile_list": ["139"]})
    await n2.send(notification(1, "resolved"))
    t = receiver.of("wecom")[-1].json
    assert t["msgtype"] == "text" and t["text"]["mentioned_mobile_list"] == ["139"] and "[已恢复]" in t["text"]["content"]


async def test_feishu_signed_card(receiver: Receiver) -> None:
    n = make(configs(receiver)["feishu"])
    await n.send(notification())
    (r,) = receiver.of("feishu")
    assert r.signed_ok is True and r.path == "/feishu/hook/abc"
    card = r.json["card"]
    assert card["header"]["template"] == "red" and "[严重]" in card["header"]["title"]["content"]
    assert card["elements"][0]["tag"] == "markdown"
    bad = make({**configs(receiver)["feishu"], "secret": "nope"})
    with pytest.raises(NotifyError) as ei:
        await bad.send(notification())
    assert ei.value.retryable is False and ei.value.code == 19021


async def test_webhook_documented_json_and_hmac(receiver: Receiver) -> None:
    n = make({**configs(receiver)["webhook"], "headers": {"X-Team": "ops"}, "bearer_token": "t0k"})
    await n.send(notification(3))
    (r,) = receiver.of("webhook")
    assert r.signed_ok is True and r.headers["X-Team"] == "ops" and r.headers["Authorization"] == "Bearer t0k"
    b = r.json
    assert set(b) >= {"version", "source", "receiver", "status", "groupKey", "groupLabels", "commonLabels", "commonAnnotations", "externalURL",
                      "title", "text", "truncatedAlerts", "alerts"}
    assert b["status"] == "firing" and len(b["alerts"]) == 3 and b["commonLabels"]["module"] == "payment"
    a = b["alerts"][0]
    assert set(a) >= {"id", "fingerprint", "status", "severity", "labels", "annotations", "startsAt", "endsAt", "value", "threshold", "generatorURL"}
    assert a["startsAt"].endswith("Z") and a["endsAt"] is None and a["value"] == 150.0


@pytest.mark.parametrize("vendor", ["webhook", "dingtalk", "wecom", "feishu"])
async def test_http_status_table_applies_to_every_notifier(receiver: Receiver, vendor: str) -> None:
    """One shared table decides retry for every HTTP notifier: 408/425/429 and 5xx retry, other 4xx do not."""
    assert RETRYABLE_HTTP == {408, 425, 429}
    n = make(configs(receiver)[vendor])
    receiver.script[vendor] = list(STATUSES)
    for st in STATUSES:
        with pytest.raises(NotifyError) as ei:
            await n.send(notification())
        assert ei.value.status == st
        assert ei.value.retryable is http_retryable(st) is (st in (408, 425, 429) or st >= 500), st
    await n.send(notification())  # and a 2xx delivers


async def test_retry_after_is_honoured_in_the_error(receiver: Receiver) -> None:
    n = make(configs(receiver)["webhook"])
    receiver.script["webhook"] = [(429, {"error": "slow down"}, {"Retry-After": "7"}),
                                  (503, {"error": "later"}, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})]
    with pytest.raises(NotifyError) as ei:
        await n.send(notification())
    assert ei.value.retryable and ei.value.status == 429 and ei.value.retry_after == 7.0
    with pytest.raises(NotifyError) as ei:
        await n.send(notification())
    assert ei.value.retryable and ei.value.retry_after == 0.0  # an HTTP date in the past: retry now


@pytest.mark.parametrize("vendor,code,retry", [("dingtalk", 130101, True), ("dingtalk", 300001, False), ("wecom", 45009, True),
                                               ("wecom", 93000, False), ("feishu", 9499, True), ("feishu", 19024, False)])
async def test_vendor_error_codes(receiver: Receiver, vendor: str, code: int, retry: bool) -> None:
    assert VENDOR_CODES[vendor][code] is retry
    body = {"errcode": code, "errmsg": "x"} if vendor != "feishu" else {"code": code, "msg": "x"}
    receiver.script[vendor] = [(200, body)]
    with pytest.raises(NotifyError) as ei:
        await make(configs(receiver)[vendor]).send(notification())
    assert ei.value.retryable is retry and ei.value.code == code


async def test_unreachable_endpoint_is_retryable() -> None:
    from tests.servers.net import free_port

    n = make({"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/x", "timeout": 2})
    with pytest.raises(NotifyError) as ei:
        await n.send(notification())
    assert ei.value.retryable and "cannot reach" in str(ei.value)


@pytest.mark.parametrize("vendor,limit", [("dingtalk", 20000), ("wecom", 4096), ("feishu", 20 * 1024)])
async def test_messages_fit_channel_limits(receiver: Receiver, vendor: str, limit: int) -> None:
    """300 alerts in one group: the message is cut to the channel's limit, saying how many were left out; the vendor accepts it."""
    n = make(configs(receiver)[vendor])
    await n.send(notification(300))
    r = receiver.of(vendor)[0]
    text = r.raw.decode()
    if vendor == "wecom":
        assert len(r.json["markdown"]["content"].encode()) <= limit
    else:
        assert len(r.raw) <= limit
    assert "另有" in text and "条告警未显示" in text


def test_english_and_chinese_templates_cover_every_rule_type() -> None:
    r_zh, r_en = Renderer("zh-CN"), Renderer("en")
    types = {"threshold": {"metric": "system.cpu.usage_percent", "agg": "avg", "window": 600, "op": ">", "unit": "percent"},
             "performance": {"metric": "app.request.duration_seconds", "agg": "max", "window": 300, "op": ">", "unit": "seconds"},
             "ratio": {"window": 300, "op": ">", "unit": "percent"}, "exceptions": {"window": 300, "op": ">"},
             "new_exception": {}, "probe": {}, "host_down": {}, "absent": {"metric": "x.y"},
             "prediction": {"metric": "system.filesystem.used_percent", "limit": 100, "metric_unit": "percent"}}
    for t, d in types.items():
        a = mk_alert()
        a.details = {"type": t, **d}
        a.labels["probe"] = "http"
        for state in ("firing", "resolved"):
            a.state = state
            a.resolved_at = time.time() if state == "resolved" else None
            n = Notification("ops", state, [a])
            for r in (r_zh, r_en):
                for tpl in ("title.j2", "text.j2", "markdown.j2", "email.html", "email_subject.j2"):
                    out = r.render(tpl, n)
                    assert out and "Undefined" not in out and "{{" not in out, (t, tpl, out)
    a = mk_alert()
    a.details = {"type": "threshold", **types["threshold"]}
    a.value, a.threshold = 97.23, 90.0
    zh = r_zh.render("text.j2", Notification("ops", "firing", [a]))
    en = r_en.render("text.j2", Notification("ops", "firing", [a]))
    assert "平均值（10分钟内）为 97.2%，超过阈值 90.0%" in zh
    assert "average of system.cpu.usage_percent over 10 min is 97.2%, above the threshold 90.0%" in en, en
