"""Email over SMTP (``smtps://`` implicit TLS, e.g. Yandex 465; ``smtp://`` with STARTTLS when offered).

One connection per worker thread, kept open across messages and reopened when
the server closed it.  Messages are ``multipart/alternative`` (plain text and
HTML), serialised with ``email.policy.SMTP`` (CRLF: servers reject bare LF),
with a Message-ID derived from the notification.  Header values with CR or LF
are refused: no header injection, no extra recipient.

Classification: 4xx replies and failures before DATA completes are transient;
5xx are permanent (550/551/553 and 5.1.x also mark the mailbox unreachable;
554 5.7.1 spam rejections do not); a connection lost after the final "." is
*uncertain* (RFC 1047): the server may have queued the message.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
import threading
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, parseaddr
from typing import Any, ClassVar

from shared.config import Settings, SmtpParams
from workers.channels.base import Addressable, Channel, DeliveryError, RenderedMessage

_ADDRESS = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+$")


def _clean_header(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise DeliveryError.permanent(f"header {name} contains a line break (refused: header injection)")
    return value


class EmailChannel(Channel):
    name: ClassVar[str] = "email"
    preference_field: ClassVar[str] = "notifications_email_enabled"

    def __init__(self, *, smtp: SmtpParams | None, email_from: str, timeout_s: float = 30) -> None:
        self.smtp = smtp
        self.email_from = email_from
        self.timeout_s = timeout_s
        self.domain = (parseaddr(email_from)[1].rpartition("@")[2] or "vestnik.local").lower()
        self._local = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailChannel:
        return cls(smtp=settings.smtp, email_from=settings.email_from, timeout_s=settings.smtp_timeout_s)

    def address_of(self, client: Addressable) -> str | None:
        return client.email or None

    def describe(self) -> dict[str, Any]:
        if self.smtp is None:
            return {"name": self.name, "configured": False}
        return {"name": self.name, "host": self.smtp.host, "port": self.smtp.port, "ssl": self.smtp.ssl,
                "configured": True}

    # ------------------------------------------------------------ message

    def build(self, address: str, message: RenderedMessage) -> EmailMessage:
        if not _ADDRESS.match(address):
            raise DeliveryError.permanent(f"not a single email address: {address[:80]!r}",
                                          address_unreachable=True)
        msg = EmailMessage(policy=SMTP_POLICY)
        msg["From"] = _clean_header("From", self.email_from)
        msg["To"] = _clean_header("To", address)
        msg["Subject"] = _clean_header("Subject", message.subject or "")
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = f"<notification-{message.notification_id}@{self.domain}>"
        for name, value in message.headers.items():
            msg[_clean_header("header name", name)] = _clean_header(name, value)
        msg.set_content(message.text or "")
        if message.html:
            msg.add_alternative(message.html, subtype="html")
        if message.attachment is not None:
            maintype, _, subtype = message.attachment.mime_type.partition("/")
            msg.add_attachment(message.attachment.content, maintype=maintype or "application",
                               subtype=subtype or "octet-stream", filename=message.attachment.filename)
        return msg

    # ------------------------------------------------------------ connection

    def _connect(self) -> smtplib.SMTP:
        if self.smtp is None:
            raise DeliveryError.permanent("email is not configured (VESTNIK_SMTP_URL is empty)")
        p = self.smtp
        try:
            if p.ssl:
                conn: smtplib.SMTP = smtplib.SMTP_SSL(p.host, p.port, timeout=self.timeout_s,
                                                      context=ssl.create_default_context())
            else:
                conn = smtplib.SMTP(p.host, p.port, timeout=self.timeout_s)
                conn.ehlo()
                if conn.has_extn("starttls"):
                    conn.starttls(context=ssl.create_default_context())
                    conn.ehlo()
            if p.username:
                conn.login(p.username, p.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError.permanent(f"SMTP login refused ({exc.smtp_code})") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError.transient(f"SMTP connect failed: {type(exc).__name__}") from None
        return conn

    def _conn(self, fresh: bool = False) -> smtplib.SMTP:
        conn = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                self._drop()
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a dead socket
                conn.close()

    # ------------------------------------------------------------ sending

    def send(self, address: str, message: RenderedMessage) -> str:
        msg = self.build(address, message)
        payload = msg.as_bytes(policy=SMTP_POLICY)
        sender = parseaddr(self.email_from)[1]
        for attempt in (1, 2):
            conn = self._conn(fresh=False)
            try:
                code, reply = conn.mail(sender)
                if code != 250:
                    raise _reply_error("MAIL FROM", code, reply)
                code, reply = conn.rcpt(address)
                if code not in (250, 251):
                    conn.rset()
                    raise _reply_error("RCPT TO", code, reply)
            except smtplib.SMTPServerDisconnected:
                self._drop()
                if attempt == 1:
                    continue  # the kept connection had gone idle: reconnect once
                raise DeliveryError.transient("SMTP server disconnected before the message was sent") from None
            except (OSError, smtplib.SMTPException) as exc:
                self._drop()
                raise DeliveryError.transient(f"SMTP error before DATA: {type(exc).__name__}") from None
            return self._data(conn, payload, msg["Message-ID"])
        raise DeliveryError.transient("SMTP: could not send")  # pragma: no cover

    def _data(self, conn: smtplib.SMTP, payload: bytes, message_id: str) -> str:
        try:
            code, reply = conn.docmd("DATA")
            if code != 354:
                raise _reply_error("DATA", code, reply)
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._drop()
            raise DeliveryError.transient(f"SMTP error at DATA: {type(exc).__name__}") from None
        try:
            q = smtplib.quotedata(payload.decode("ascii", "surrogateescape")).encode("ascii", "surrogateescape")
            if not q.endswith(b"\r\n"):
                q += b"\r\n"
            conn.send(q + b".\r\n")
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._drop()
            raise DeliveryError.transient(f"SMTP connection lost during DATA: {type(exc).__name__}") from None
        try:
            code, reply = conn.getreply()
        except (TimeoutError, OSError, smtplib.SMTPServerDisconnected) as exc:
            # After the final ".": the server may have queued it (RFC 1047). Never resend blindly.
            self._drop()
            raise DeliveryError.uncertain(f"SMTP connection lost after the final dot: {type(exc).__name__}") \
                from None
        if code != 250:
            raise _reply_error("end of DATA", code, reply)
        return message_id

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.quit()
        self._local.conn = None


def _reply_error(stage: str, code: int, reply: bytes) -> DeliveryError:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    reason = f"{stage}: {code} {text}".strip()
    if 400 <= code < 500:
        return DeliveryError.transient(reason)
    mailbox_dead = code in (550, 551, 553) and "5.7." not in text or " 5.1." in f" {text}"
    return DeliveryError.permanent(reason, address_unreachable=mailbox_dead)
