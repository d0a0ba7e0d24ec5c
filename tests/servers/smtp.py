"""A real SMTP server for tests: aiosmtpd on loopback (plain, STARTTLS or implicit TLS, optional AUTH), recording what it receives."""

from __future__ import annotations

import email
import email.policy
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Callable, Iterator

import pytest

from tests.servers.net import free_port, wait_port


@dataclass
class SmtpServer:
    host: str
    port: int
    #: (envelope from, envelope to, parsed message, authenticated user or None)
    messages: list[tuple[str, list[str], EmailMessage, str | None]] = field(default_factory=list)
    #: answer the next DATA commands with these replies first (e.g. "451 4.3.0 try later")
    data_replies: list[str] = field(default_factory=list)


class _Handler:
    def __init__(self, srv: SmtpServer) -> None:
        self.srv = srv

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.srv.data_replies:
            return self.srv.data_replies.pop(0)
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        user = None
        if getattr(session, "auth_data", None) is not None:
            ad = session.auth_data
            user = ad.login.decode() if isinstance(getattr(ad, "login", None), bytes) else str(ad)
        self.srv.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg, user))  # type: ignore[arg-type]
        return "250 OK"


def _authenticator(users: dict[str, str]) -> Callable[..., Any]:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def check(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        if isinstance(auth_data, LoginPassword) and users.get(auth_data.login.decode()) == auth_data.password.decode():
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    return check


@pytest.fixture
def smtp_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., SmtpServer]]:
    """`make(security="none"|"starttls"|"ssl", users={"u": "p"})` starts an aiosmtpd server on 127.0.0.1 and returns it.

    TLS uses a trustme CA (tests.servers.tls); the CA file is `srv.ca_file`."""
    from aiosmtpd.controller import Controller

    from tests.servers.tls import make_ca_files

    controllers: list[Any] = []

    def make(security: str = "none", users: dict[str, str] | None = None) -> SmtpServer:
        port = free_port()
        srv = SmtpServer("127.0.0.1", port)
        kw: dict[str, Any] = {}
        if security != "none" or users:
            tls = make_ca_files(tmp_path_factory.mktemp("smtp-tls"))
            ctx = tls.server_context()
            srv.ca_file = tls.ca_file  # type: ignore[attr-defined]
            if security == "starttls":
                kw.update(tls_context=ctx, require_starttls=True)
            elif security == "ssl":
                kw.update(ssl_context=ctx)
        if users:
            kw.update(authenticator=_authenticator(users), auth_require_tls=security != "none", auth_required=True)
        c = Controller(_Handler(srv), hostname="127.0.0.1", port=port, server_hostname="localhost", ready_timeout=10, **kw)
        c.start()
        wait_port("127.0.0.1", port)
        controllers.append(c)
        return srv

    yield make
    for c in controllers:
        c.stop()


def client_tls_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)
