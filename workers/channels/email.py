"""Email over SMTP: ``smtps://`` (implicit TLS, e.g. Yandex on 465) or ``smtp://`` with STARTTLS.

Why it looks like this:

- **One connection per sending thread, kept open.**  Delivery sends from a
  small pool of threads (``VESTNIK_SMTP_CONNECTIONS``, ``workers/senders.py``:
  providers limit simultaneous connections); each thread has its own
  connection (``threading.local``), so no thread waits for another's.  A
  connection idle for longer than ``max_idle_s`` is replaced before use, and
  one the server closed is reopened once, transparently, before anything was
  sent.
- **MIME written directly** for the common message (plain text + HTML, no
  attachment): headers encoded (RFC 2047) and the parts base64, in a few
  string operations instead of building an ``EmailMessage`` (about 1.3 ms).
  A message with an attachment is built with ``EmailMessage``.  Both apply
  the same header checks.
- **The SMTP steps are driven by hand** (MAIL, RCPT, DATA, then the message
  and the final ".") instead of ``send_message``, because the outcome depends
  on *where* a failure happens.  A server that offers PIPELINING (RFC 2920)
  gets MAIL, RCPT and DATA in one write: two round trips a message, not four.  Up to the final "." nothing can have been
  accepted, so failures are ``transient``.  If the connection is lost or
  times out after the final "." and before the reply, the server may have
  queued the message (RFC 1047): that is ``uncertain`` and never retried.
- **Replies are classified in one table** (:func:`classify_reply`): 4xx is
  transient; 5xx is permanent; a recipient refused with 550/551/553 or an
  enhanced status 5.1.x/5.2.1 marks the address unreachable; a policy or spam
  rejection (5.7.x, e.g. Yandex's ``554 5.7.1``) does not.
- **No header injection**: any header value (subject, address, extra headers)
  with CR or LF is a permanent error, and the recipient must be exactly one
  address.  Messages are serialised with ``email.policy.SMTP`` (CRLF line
  ends; aiosmtpd and strict servers reject bare LF) and 7-bit transfer
  encodings, so no server needs 8BITMIME.
- **Secrets**: no reason includes a server's text about authentication, and
  every reason is scrubbed of the password before it leaves this module.
  The password is never sent over an unencrypted connection except to a
  loopback address (a local test server).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import ipaddress
import re
import secrets
import smtplib
import ssl
import threading
import time
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formataddr, formatdate, parseaddr
from typing import Any, ClassVar

from vestnik.shared.config import Settings, SmtpParams
from vestnik.shared.unsubscribe import one_click_headers
from vestnik.shared.wire import EMAIL_PATTERN
from vestnik.workers.channels.base import Addressable, Button, Channel, DeliveryError, RenderedMessage
from vestnik.workers.limits import ChannelRules, Rule

#: CRLF line ends and base64/quoted-printable for anything non-ASCII.
POLICY = SMTP_POLICY.clone(cte_type="7bit")

#: Headers the channel sets itself; ``message.headers`` may not override them.
RESERVED_HEADERS = frozenset({
    "from", "to", "cc", "bcc", "subject", "date", "message-id", "sender", "mime-version",
    "content-type", "content-transfer-encoding", "return-path",
})

_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII except ":" (RFC 5322 field-name)
_ADDRESS = re.compile(r"^[^@\s,;:<>()\[\]\"\\]+@[^@\s,;:<>()\[\]\"\\]+$")
_CLOSED_EARLY = "SMTP server closed the connection before the message was sent"
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


class EmailChannel(Channel):
    """Sends rendered messages as ``multipart/alternative`` email over one kept SMTP connection."""

    name: ClassVar[str] = "email"
    preference_field: ClassVar[str] = "notifications_email_enabled"
    address_field: ClassVar[str | None] = "email"
    address_casefold: ClassVar[bool] = True
    body_maxlen: ClassVar[int | None] = None
    switch_field: ClassVar[str] = "email_enabled"
    title: ClassVar[str] = "Email"
    address_label: ClassVar[str] = "Email"
    noun: ClassVar[str] = "email"
    supports_attachments: ClassVar[bool] = True
    #: most providers accept 25 MB, and base64 makes a part a third larger than its file
    max_attachment_bytes: ClassVar[int] = 18 * 1024 * 1024
    #: not a Telegram file_id: a mail needs the file's bytes, which only Telegram holds
    attachment_sources: ClassVar[frozenset[str]] = frozenset({"url", "file"})
    supports_html: ClassVar[bool] = True
    subject_mode: ClassVar[str] = "required"
    html_part: ClassVar[bool] = True

    def __init__(self, *, smtp: SmtpParams | None, email_from: str, timeout_s: float = 30,
                 max_idle_s: float = 60) -> None:
        self.smtp = smtp
        self.email_from = email_from
        self.timeout_s = timeout_s
        self.max_idle_s = max_idle_s
        sender = parseaddr(email_from)[1]
        self.sender = sender
        self.domain = _ascii_domain(sender.rpartition("@")[2]) or "vestnik.invalid"
        self._local = threading.local()  # .conn, .last_used: this thread's connection
        self._open_lock = threading.Lock()
        self._open: list[smtplib.SMTP] = []
        #: connections opened so far (for describe() and tests)
        self.connects = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailChannel:
        return cls(smtp=settings.smtp, email_from=settings.email_from, timeout_s=settings.smtp_timeout_s)

    def __repr__(self) -> str:
        where = f"{self.smtp.host}:{self.smtp.port}" if self.smtp else "not configured"
        return f"EmailChannel({where})"

    def address_of(self, client: Addressable) -> str | None:
        return (client.email or "").strip() or None

    def check_address(self, value: str) -> str:
        address = str(value).strip()
        if len(address) > 320 or not re.fullmatch(EMAIL_PATTERN, address):
            raise ValueError(f"not a single valid address: {address[:80]!r}")
        return address

    @classmethod
    def unsubscribe(cls, url: str, locale: str) -> tuple[dict[str, str], tuple[tuple[Button, ...], ...]]:
        return one_click_headers(url), ()

    @classmethod
    def limit_rules(cls, settings: Settings) -> ChannelRules:
        return ChannelRules(overall=(
            Rule("minute", settings.email_rate_per_min, 60.0),
            Rule("hour", settings.email_rate_per_hour, 3600.0),
            Rule("day", settings.email_rate_per_day, 86400.0),
        ))

    @classmethod
    def connections(cls, settings: Settings) -> int:
        return settings.smtp_connections

    def describe(self) -> dict[str, Any]:
        if self.smtp is None:
            return {"name": self.name, "configured": False}
        return {"name": self.name, "configured": True, "host": self.smtp.host, "port": self.smtp.port,
                "ssl": self.smtp.ssl, "from": self.email_from, "connections_opened": self.connects}

    # ------------------------------------------------------------------ the message

    def message_id(self, notification_id: int) -> str:
        return f"<notification-{notification_id}@{self.domain}>"

    def build(self, address: str, message: RenderedMessage) -> EmailMessage:
        """The email for one notification; DeliveryError.permanent for any unsafe value."""
        recipient = normalise_address(address)
        msg = EmailMessage(policy=POLICY)
        msg["From"] = _header_value("From", self.email_from)
        msg["To"] = recipient
        msg["Subject"] = _header_value("Subject", message.subject or "")
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = self.message_id(message.notification_id)
        extra = {name.lower() for name in message.headers}
        if "auto-submitted" not in extra:
            msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to notifications
        for name, value in message.headers.items():
            if not _HEADER_NAME.match(name):
                raise DeliveryError.permanent(f"invalid header name {name[:40]!r}")
            if name.lower() in RESERVED_HEADERS:
                raise DeliveryError.permanent(f"header {name} is set by the email channel, not by a template")
            msg[name] = _header_value(name, value)
        msg.set_content(message.text or "")
        if message.html:
            msg.add_alternative(message.html, subtype="html")
        if message.attachment is not None:
            if message.attachment.telegram_file_id:  # delivery refuses it earlier; never mail an empty file
                raise DeliveryError.permanent("attachment: a Telegram file_id cannot be sent by email (only "
                                              "Telegram holds the file): upload the file in the admin or give "
                                              "its URL")
            maintype, _, subtype = message.attachment.mime_type.partition("/")
            filename = _header_value("attachment filename", message.attachment.filename)
            msg.add_attachment(message.attachment.content, maintype=maintype or "application",
                               subtype=subtype or "octet-stream", filename=filename)
        return msg

    # ------------------------------------------------------------------ sending

    def send(self, address: str, message: RenderedMessage) -> str:
        """Send one email on this thread's connection; return its Message-ID."""
        if self.smtp is None:
            raise DeliveryError.permanent("email is not configured (VESTNIK_SMTP_URL is empty)")
        if not self.sender or not _ADDRESS.match(self.sender):
            raise DeliveryError.permanent("VESTNIK_EMAIL_FROM has no usable address")
        recipient = normalise_address(address)
        if message.attachment is None:
            data = self.render(recipient, message)
        else:
            data = self.build(address, message).as_bytes(policy=POLICY)
        payload = _dot_stuffed(data)
        try:
            self._transaction(recipient, payload)
        except DeliveryError as exc:
            raise self._scrubbed(exc) from None
        self._local.last_used = time.monotonic()
        return self.message_id(message.notification_id)

    def render(self, recipient: str, message: RenderedMessage) -> bytes:
        """The bytes of a plain-text + HTML email, written directly (the same checks as :meth:`build`)."""
        headers = [
            ("From", _encoded_address(_header_value("From", self.email_from))),
            ("To", recipient),
            ("Subject", _encoded(_header_value("Subject", message.subject or ""))),
            ("Date", formatdate(usegmt=True)),
            ("Message-ID", self.message_id(message.notification_id)),
            ("MIME-Version", "1.0"),
        ]
        if "auto-submitted" not in {name.lower() for name in message.headers}:
            headers.append(("Auto-Submitted", "auto-generated"))  # RFC 3834: no auto-replies to notifications
        for name, value in message.headers.items():
            if not _HEADER_NAME.match(name):
                raise DeliveryError.permanent(f"invalid header name {name[:40]!r}")
            if name.lower() in RESERVED_HEADERS:
                raise DeliveryError.permanent(f"header {name} is set by the email channel, not by a template")
            headers.append((name, _encoded(_header_value(name, value))))
        text_part = _part("text/plain", message.text or "")
        if message.html:
            boundary = f"=_vestnik_{message.notification_id}_{secrets.token_hex(8)}"
            headers.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
            body = (f"--{boundary}\r\n{text_part}\r\n--{boundary}\r\n{_part('text/html', message.html)}"
                    f"\r\n--{boundary}--\r\n")
        else:
            head, _, content = text_part.partition("\r\n\r\n")
            headers += [tuple(line.split(": ", 1)) for line in head.split("\r\n")]  # type: ignore[misc]
            body = content
        return ("".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n" + body).encode("ascii")

    def _transaction(self, recipient: str, payload: bytes) -> None:
        conn, reused = self._connection()
        try:
            self._envelope(conn, recipient)
        except _Stale:
            if not reused:
                self._drop()
                raise DeliveryError.transient(_CLOSED_EARLY) from None
            # The kept connection had been closed by the server: reopen once, nothing was sent.
            self._drop()
            conn, _ = self._connection()
            try:
                self._envelope(conn, recipient)
            except _Stale:
                self._drop()
                raise DeliveryError.transient(_CLOSED_EARLY) from None
        self._data(conn, payload)

    def _envelope(self, conn: smtplib.SMTP, recipient: str) -> None:
        """MAIL FROM, RCPT TO and DATA, up to the server's 354; raises _Stale when the connection turns
        out dead.  A server that offers PIPELINING (RFC 2920: Yandex, Gmail, most providers) gets the
        three commands in one write and answers them together: one round trip instead of three."""
        if "pipelining" in conn.esmtp_features:
            self._envelope_pipelined(conn, recipient)
            return
        self._envelope_stepwise(conn, recipient)
        try:
            code, reply = conn.docmd("DATA")
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._drop()
            raise DeliveryError.transient(f"SMTP DATA failed: {type(exc).__name__}") from None
        if code != 354:
            self._reset(conn, code)
            raise classify_reply("DATA", code, reply)

    def _envelope_pipelined(self, conn: smtplib.SMTP, recipient: str) -> None:
        # Both are checked bare addresses already (``_ADDRESS``), written as smtplib would write them.
        try:
            conn.send(f"MAIL FROM:<{self.sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n")
            mail = conn.getreply()
        except (smtplib.SMTPServerDisconnected, ConnectionError, TimeoutError):
            raise _Stale() from None
        except OSError as exc:
            self._drop()
            raise DeliveryError.transient(f"SMTP MAIL FROM failed: {type(exc).__name__}") from None
        if mail[0] == 421:
            raise _Stale()
        try:
            rcpt = conn.getreply()
            data = conn.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._drop()
            raise DeliveryError.transient(f"SMTP RCPT TO failed: {type(exc).__name__}") from None
        if mail[0] == 250 and rcpt[0] in (250, 251) and data[0] == 354:
            return
        if data[0] == 354:
            self._drop()  # DATA taken without an envelope (against RFC 2920): never send it a message
        else:
            self._reset(conn, 421 if 421 in (mail[0], rcpt[0], data[0]) else data[0])
        if mail[0] != 250:
            raise classify_reply("MAIL FROM", *mail)
        if rcpt[0] not in (250, 251):
            raise classify_reply("RCPT TO", *rcpt)
        raise classify_reply("DATA", *data)

    def _envelope_stepwise(self, conn: smtplib.SMTP, recipient: str) -> None:
        """MAIL FROM and RCPT TO, each waiting for its reply; raises _Stale when the connection is dead."""
        try:
            # smtplib's mail() and rcpt() parse the address again (quoteaddr); both are checked bare
            # addresses already (``_ADDRESS``), so the command is written as they would write it.
            conn.putcmd("mail", f"FROM:<{self.sender}>")
            code, reply = conn.getreply()
        except (smtplib.SMTPServerDisconnected, ConnectionError, TimeoutError):
            raise _Stale() from None
        except OSError as exc:
            self._drop()
            raise DeliveryError.transient(f"SMTP MAIL FROM failed: {type(exc).__name__}") from None
        if code == 421:
            raise _Stale()
        if code != 250:
            self._reset(conn, code)
            raise classify_reply("MAIL FROM", code, reply)
        try:
            conn.putcmd("rcpt", f"TO:<{recipient}>")
            code, reply = conn.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._drop()
            raise DeliveryError.transient(f"SMTP RCPT TO failed: {type(exc).__name__}") from None
        if code not in (250, 251):
            self._reset(conn, code)
            raise classify_reply("RCPT TO", code, reply)

    def _data(self, conn: smtplib.SMTP, payload: bytes) -> None:
        """The message and the final "." (after the server's 354), then the reply: the uncertain window."""
        try:
            conn.send(payload)  # the message, already ending with CRLF "." CRLF
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            # The final "." did not get out: the server cannot have accepted the message.
            self._drop()
            raise DeliveryError.transient(f"SMTP connection lost while sending the message: "
                                          f"{type(exc).__name__}") from None
        try:
            code, reply = conn.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._drop()
            raise DeliveryError.uncertain(
                f"SMTP: no reply after the final '.' ({type(exc).__name__}); "
                "the server may have accepted the message (RFC 1047)") from None
        if code == 421:
            self._drop()
        if code != 250:
            raise classify_reply("end of DATA", code, reply)

    # ------------------------------------------------------------------ the connection

    def _connection(self) -> tuple[smtplib.SMTP, bool]:
        """This thread's kept connection (reused=True) or a new one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and time.monotonic() - getattr(self._local, "last_used", 0.0) > self.max_idle_s:
            self._drop()  # servers drop idle clients; do not find out in the middle of a send
            conn = None
        if conn is not None:
            return conn, True
        conn = self._open_connection()
        self._local.conn = conn
        with self._open_lock:
            self._open.append(conn)
            self.connects += 1
        self._local.last_used = time.monotonic()
        return conn, False

    def _open_connection(self) -> smtplib.SMTP:
        params = self.smtp
        assert params is not None
        conn: smtplib.SMTP | None = None
        try:
            if params.ssl:
                conn = smtplib.SMTP_SSL(params.host, params.port, timeout=self.timeout_s,
                                        context=ssl.create_default_context())
                conn.ehlo()
            else:
                conn = smtplib.SMTP(params.host, params.port, timeout=self.timeout_s)
                conn.ehlo()
                if conn.has_extn("starttls"):
                    conn.starttls(context=ssl.create_default_context())
                    conn.ehlo()
                elif params.username and not _is_loopback(params.host):
                    raise DeliveryError.permanent(
                        f"SMTP server {params.host} offers no STARTTLS; refusing to send the password "
                        "unencrypted (use smtps:// or a server with STARTTLS)")
            if params.username:
                conn.login(params.username, params.password or "")
        except DeliveryError:
            _close_quietly(conn)
            raise
        except smtplib.SMTPAuthenticationError as exc:
            _close_quietly(conn)
            # Only the code: the server's text may quote what we sent.
            if 400 <= exc.smtp_code < 500:
                raise DeliveryError.transient(f"SMTP login failed temporarily ({exc.smtp_code})") from None
            raise DeliveryError.permanent(
                f"SMTP login refused ({exc.smtp_code}); check the user and password in VESTNIK_SMTP_URL",
            ) from None
        except smtplib.SMTPNotSupportedError:
            _close_quietly(conn)
            raise DeliveryError.permanent(
                "SMTP server does not offer AUTH; remove the user from VESTNIK_SMTP_URL") from None
        except smtplib.SMTPResponseException as exc:
            _close_quietly(conn)
            raise classify_reply("connect", exc.smtp_code, b"") from None
        except ssl.SSLCertVerificationError:
            _close_quietly(conn)
            raise DeliveryError.transient(f"SMTP TLS certificate of {params.host} did not verify") from None
        except (OSError, smtplib.SMTPException) as exc:
            _close_quietly(conn)
            raise DeliveryError.transient(
                f"SMTP connection to {params.host}:{params.port} failed: {type(exc).__name__}") from None
        return conn

    def _reset(self, conn: smtplib.SMTP, code: int) -> None:
        """Leave the kept connection ready for the next message after a refused step."""
        if code == 421:
            self._drop()
            return
        try:
            conn.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        with self._open_lock:
            if conn in self._open:
                self._open.remove(conn)
        _close_quietly(conn)

    def close(self) -> None:
        """QUIT every kept connection (the next send opens a new one).  Call it when no thread sends."""
        with self._open_lock:
            conns, self._open = self._open, []
        for conn in conns:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                conn.quit()
            _close_quietly(conn)
        self._local = threading.local()

    def _scrubbed(self, exc: DeliveryError) -> DeliveryError:
        password = self.smtp.password if self.smtp else None
        if password and password in exc.reason:
            exc.reason = exc.reason.replace(password, "***")
            exc.args = (exc.reason,)
        return exc


class _Stale(Exception):
    """The kept connection is dead (closed by the server, or 421 to MAIL)."""


# ---------------------------------------------------------------------- classification


def classify_reply(stage: str, code: int, reply: bytes | str) -> DeliveryError:
    """The DeliveryError an SMTP reply means; ``stage`` is MAIL FROM, RCPT TO, DATA or end of DATA."""
    text = (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)).strip()
    text = " ".join(text.split())[:300]
    reason = f"SMTP {stage}: {code} {text}".rstrip()
    if 400 <= code < 500:
        return DeliveryError.transient(reason)
    if stage == "MAIL FROM":
        return DeliveryError.permanent(reason + " (the sender was refused; check VESTNIK_EMAIL_FROM)")
    enhanced = _ENHANCED.search(text)
    status = tuple(int(x) for x in enhanced.groups()) if enhanced else None
    # The mailbox itself is gone: 5.1.x (bad mailbox or domain), 5.2.1 (disabled), or a bare 550/551/553
    # to RCPT.  Policy and spam rejections (5.7.x) and a full mailbox (5.2.2) leave the address alone.
    mailbox_status = status is not None and (status[1] == 1 or status[1:] == (2, 1))
    recipient_refused = stage == "RCPT TO" and code in (550, 551, 553) and status is None
    return DeliveryError.permanent(reason, address_unreachable=mailbox_status or recipient_refused)


# ---------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=256)
def _encoded(value: str) -> str:
    """A header value as ASCII: RFC 2047 encoded words (folded) when it is not ASCII already.
    Cached: a batch sends one subject to many clients, and ``Header`` costs about 1 ms."""
    if value.isascii() and len(value) < 900:
        return value
    return Header(value, "utf-8").encode(linesep="\r\n")


@functools.lru_cache(maxsize=16)
def _encoded_address(value: str) -> str:
    """``Name <address>`` with the display name encoded when it is not ASCII."""
    name, address = parseaddr(value)
    if not name:
        return address or value
    return formataddr((name, address), charset="utf-8")


def _part(content_type: str, text: str) -> str:
    """One MIME part: its headers and its text, base64 (7-bit safe whatever the text)."""
    if not text.endswith("\n"):
        text += "\n"  # as EmailMessage.set_content does
    # MIME's canonical text: CRLF line ends
    canonical = text.replace("\n", "\r\n") if "\r" not in text else _LINE_END.sub("\r\n", text)
    encoded = base64.encodebytes(canonical.encode("utf-8")).decode("ascii").replace("\n", "\r\n")
    return (f"Content-Type: {content_type}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            f"{encoded}")


def normalise_address(address: str) -> str:
    """Exactly one bare address (``user@domain``), domain IDNA-encoded; else DeliveryError.permanent."""
    _header_value("To", address)
    candidate = address.strip()
    if not _ADDRESS.match(candidate):
        raise DeliveryError.permanent(f"not a single email address: {candidate[:80]!r}",
                                      address_unreachable=True)
    local, _, domain = candidate.rpartition("@")
    if not local.isascii():
        raise DeliveryError.permanent("non-ASCII mailbox names (SMTPUTF8) are not supported",
                                      address_unreachable=True)
    ascii_domain = _ascii_domain(domain)
    if not ascii_domain:
        raise DeliveryError.permanent(f"invalid domain in {candidate[:80]!r}", address_unreachable=True)
    return f"{local}@{ascii_domain}"


def _ascii_domain(domain: str) -> str:
    if domain.isascii():
        return domain.lower()
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return ""


#: Every character Python's email package treats as a line end (str.splitlines): CR and LF
#: would inject a header; the others make it refuse the message with a ValueError.
_LINE_BREAKS = re.compile("[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def _header_value(name: str, value: str) -> str:
    if _LINE_BREAKS.search(value):
        raise DeliveryError.permanent(f"{name} contains a line break (refused: header injection)")
    return value


_LINE_END = re.compile(r"\r\n|\r|\n")


def _dot_stuffed(data: bytes) -> bytes:
    """DATA payload: CRLF line ends, leading dots doubled, ending with CRLF "." CRLF."""
    crlf = data.count(b"\r\n")
    if crlf == data.count(b"\n") == data.count(b"\r") and not data.startswith(b".") and b"\n." not in data:
        # Already CRLF only and no line starts with a dot (what render writes): nothing to change.
        return data + (b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n")
    data = re.sub(rb"\r?\n|\r", b"\r\n", data)
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _close_quietly(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()
