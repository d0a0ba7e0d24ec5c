"""Email notifier over SMTP (plain, STARTTLS or implicit TLS; optional AUTH), text + HTML, via smtplib in a thread."""

from __future__ import annotations

import asyncio
import email.utils
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

from alerting.notifiers.base import Notification, Notifier, NotifierConfig, NotifyError
from checks.config import ConfigError, field_alias

MAX_BODY_CHARS = 512 * 1024


@dataclass(frozen=True, kw_only=True)
class EmailConfig(NotifierConfig):
    #: SMTP server host name or address
    host: str
    #: default: 465 for security: ssl, 587 for starttls, 25 for none
    port: int | None = None
    #: starttls (upgrade a plain connection, the default), ssl (implicit TLS), none (plain; only on trusted networks)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    from_: str = field_alias("from")
    to: list[str]
    username: str | None = None
    password: str | None = None
    #: read the password from this file instead (first line)
    password_file: str | None = None
    #: CA bundle for a private CA; tls_verify: false accepts any certificate (testing only)
    ca_file: str | None = None
    tls_verify: bool = True
    #: EHLO name (default: this host's name)
    hello: str | None = None
    #: also send an HTML part
    html: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.to:
            raise ConfigError("to", "needs at least one address")
        for i, a in enumerate(self.to):
            if "@" not in a:
                raise ConfigError(f"to[{i}]", f"not an email address: {a!r}")
        if "@" not in self.from_:
            raise ConfigError("from", f"not an email address: {self.from_!r}")
        if self.password is not None and self.password_file is not None:
            raise ConfigError("password_file", "set either password or password_file, not both")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ConfigError("username", "is required when a password is set")
        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigError("port", f"must be 1..65535, got {self.port}")

    @property
    def effective_port(self) -> int:
        if self.port:
            return self.port
        return {"ssl": 465, "starttls": 587, "none": 25}[self.security]


def _smtp_error(e: Exception) -> NotifyError:
    if isinstance(e, smtplib.SMTPAuthenticationError):
        return NotifyError(f"SMTP authentication failed: {e.smtp_code} {_msg(e.smtp_error)}", retryable=False, status=e.smtp_code)
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        codes = [c for c, _m in e.recipients.values()]
        retry = all(400 <= c < 500 for c in codes)
        detail = "; ".join(f"{r}: {c} {_msg(m)}" for r, (c, m) in e.recipients.items())
        return NotifyError(f"SMTP server refused every recipient: {detail}", retryable=retry, status=codes[0] if codes else None)
    if isinstance(e, (smtplib.SMTPSenderRefused, smtplib.SMTPDataError, smtplib.SMTPHeloError)):
        code = e.smtp_code
        return NotifyError(f"SMTP error {code}: {_msg(e.smtp_error)}", retryable=400 <= code < 500, status=code)
    if isinstance(e, smtplib.SMTPNotSupportedError):
        return NotifyError(f"SMTP server does not support this: {e}", retryable=False)
    if isinstance(e, ssl.SSLCertVerificationError):
        return NotifyError(f"SMTP server certificate not trusted: {e.verify_message}", retryable=False)
    if isinstance(e, ssl.SSLError):
        return NotifyError(f"TLS error with the SMTP server: {e}", retryable=False)
    if isinstance(e, smtplib.SMTPResponseException):
        code = e.smtp_code
        return NotifyError(f"SMTP error {code}: {_msg(e.smtp_error)}", retryable=not 500 <= code < 600, status=code)
    if isinstance(e, (smtplib.SMTPServerDisconnected, socket.timeout, TimeoutError, ConnectionError, OSError)):
        return NotifyError(f"cannot talk to the SMTP server: {type(e).__name__}: {e}", retryable=True)
    return NotifyError(f"SMTP failure: {type(e).__name__}: {e}", retryable=True)


def _msg(m: bytes | str) -> str:
    return m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m)


class EmailNotifier(Notifier):
    TYPE = "email"
    Config = EmailConfig
    config: EmailConfig

    def build_message(self, n: Notification) -> EmailMessage:
        c = self.config
        r = self.ctx.renderer
        lang = self.language
        msg = EmailMessage()
        msg["Subject"] = r.render("email_subject.j2", n, lang).replace("\n", " ")[:250]
        msg["From"] = c.from_
        msg["To"] = ", ".join(c.to)
        msg["Date"] = email.utils.formatdate(localtime=True)
        msg["Message-ID"] = email.utils.make_msgid(domain=c.from_.rpartition("@")[2] or None)
        msg["X-Infrawatch-Status"] = n.status
        msg.set_content(r.render_fit("text.j2", n, lang, MAX_BODY_CHARS, len))
        if c.html:
            msg.add_alternative(r.render_fit("email.html", n, lang, MAX_BODY_CHARS * 2, len), subtype="html")
        return msg

    def _password(self) -> str | None:
        c = self.config
        if c.password_file:
            try:
                return Path(c.password_file).read_text(encoding="utf-8").splitlines()[0]
            except (OSError, IndexError) as e:
                raise NotifyError(f"cannot read password_file {c.password_file}: {e}", retryable=False) from None
        return c.password

    def _tls_context(self) -> ssl.SSLContext:
        c = self.config
        ctx = ssl.create_default_context(cafile=c.ca_file) if c.ca_file else ssl.create_default_context()
        if not c.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _send_sync(self, msg: EmailMessage) -> None:
        c = self.config
        timeout = c.timeout
        try:
            if c.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(c.host, c.effective_port, local_hostname=c.hello, timeout=timeout, context=self._tls_context())
            else:
                smtp = smtplib.SMTP(c.host, c.effective_port, local_hostname=c.hello, timeout=timeout)
            try:
                smtp.ehlo()
                if c.security == "starttls":
                    if not smtp.has_extn("starttls"):
                        raise NotifyError(f"SMTP server {c.host}:{c.effective_port} does not offer STARTTLS (set security: none to send in clear)", retryable=False)
                    smtp.starttls(context=self._tls_context())
                    smtp.ehlo()
                if c.username:
                    smtp.login(c.username, self._password() or "")
                smtp.send_message(msg, from_addr=c.from_, to_addrs=list(c.to))
            finally:
                try:
                    smtp.quit()
                except Exception:
                    smtp.close()
        except NotifyError:
            raise
        except Exception as e:
            raise _smtp_error(e) from None

    async def send(self, n: Notification) -> None:
        msg = self.build_message(n)
        await asyncio.to_thread(self._send_sync, msg)
