"""Email notifier against a real aiosmtpd server on loopback: plain, STARTTLS + AUTH, implicit TLS, failures classified."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from alerting.notifiers.base import NotifyError
from tests.alerting.test_notifiers import make, notification
from tests.servers.smtp import SmtpServer


def email_cfg(srv: SmtpServer, **kw: Any) -> dict[str, Any]:
    return {"type": "email", "host": srv.host, "port": srv.port, "security": "none", "from": "infrawatch@example.org",
            "to": ["ops@example.org", "oncall@example.org"], **kw}


async def test_plain_smtp_text_and_html(smtp_server_factory: Callable[..., SmtpServer]) -> None:
    srv = smtp_server_factory()
    await make(email_cfg(srv)).send(notification(2))
    (mail_from, rcpt, msg, _user), = srv.messages
    assert mail_from == "infrawatch@example.org" and rcpt == ["ops@example.org", "oncall@example.org"]
    assert msg["Subject"].startswith("[严重] 2 条告警")
    assert msg["X-Infrawatch-Status"] == "firing"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "payment_exception_burst" in text and "模块 payment" in text
    assert "<table" in html and "http://collector:8080/api/v1/alerts/" in html


async def test_starttls_with_auth(smtp_server_factory: Callable[..., SmtpServer]) -> None:
    srv = smtp_server_factory("starttls", users={"alert": "s3cret"})
    cfg = email_cfg(srv, security="starttls", username="alert", password="s3cret", ca_file=srv.ca_file)  # type: ignore[attr-defined]
    await make(cfg, lang="en").send(notification(1, "resolved"))
    (_f, _r, msg, user), = srv.messages
    assert user == "alert"
    assert msg["Subject"].startswith("[RESOLVED]")
    with pytest.raises(NotifyError) as ei:
        await make({**cfg, "password": "wrong"}).send(notification())
    assert ei.value.retryable is False and "authentication failed" in str(ei.value)
    # an untrusted certificate is not retried either
    with pytest.raises(NotifyError) as ei:
        await make({**cfg, "ca_file": None}).send(notification())
    assert ei.value.retryable is False and "certificate" in str(ei.value)


async def test_implicit_tls(smtp_server_factory: Callable[..., SmtpServer]) -> None:
    srv = smtp_server_factory("ssl")
    await make(email_cfg(srv, security="ssl", ca_file=srv.ca_file)).send(notification())  # type: ignore[attr-defined]
    assert len(srv.messages) == 1


async def test_smtp_failures_classified(smtp_server_factory: Callable[..., SmtpServer]) -> None:
    srv = smtp_server_factory()
    srv.data_replies = ["451 4.3.0 try again later", "554 5.7.1 rejected as spam"]
    n = make(email_cfg(srv))
    with pytest.raises(NotifyError) as ei:
        await n.send(notification())
    assert ei.value.retryable is True and ei.value.status == 451
    with pytest.raises(NotifyError) as ei:
        await n.send(notification())
    assert ei.value.retryable is False and ei.value.status == 554
    await n.send(notification())
    assert len(srv.messages) == 1
    # a server that offers no STARTTLS when it is required
    with pytest.raises(NotifyError) as ei:
        await make(email_cfg(srv, security="starttls")).send(notification())
    assert ei.value.retryable is False and "STARTTLS" in str(ei.value)
    from tests.servers.net import free_port

    with pytest.raises(NotifyError) as ei:
        await make({**email_cfg(srv), "port": free_port(), "timeout": 2}).send(notification())
    assert ei.value.retryable is True
