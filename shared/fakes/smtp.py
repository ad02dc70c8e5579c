"""A local SMTP server (aiosmtpd) that captures what would be sent.

For the demo and the tests: every accepted message is parsed and kept in a
ledger.  Replies can be scripted (``451`` try later, ``550`` no mailbox,
``554 5.7.1`` spam) and the connection can be dropped right after the final
"." of DATA, the window RFC 1047 warns about.  Optional AUTH (PLAIN/LOGIN)
with a fixed user and password, without TLS (tests only).
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections import deque
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class _Handler:
    def __init__(self, sink: FakeSmtpServer) -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        reply = self.sink._next_reply("RCPT")
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        reply = self.sink._next_reply("DATA")
        if reply == "DROP":
            self.sink._record(envelope, dropped=True)
            server.transport.close()  # the client never hears whether it was accepted
            return "250 OK (never seen)"
        if reply:
            return reply
        self.sink._record(envelope)
        return "250 2.0.0 Ok: queued"


class FakeSmtpServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, username: str | None = None,
                 password: str | None = None) -> None:
        self.username, self.password = username, password
        self._messages: list[dict[str, Any]] = []
        self._script: deque[tuple[str, str]] = deque()
        self.connections = 0
        self.cond = threading.Condition()
        kwargs: dict[str, Any] = {}
        if username:
            kwargs.update(authenticator=self._auth, auth_require_tls=False, auth_required=True)
        self.controller = Controller(_Handler(self), hostname=host, port=port or _free_port(host), **kwargs)

    def _auth(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.username \
            and auth_data.password.decode() == self.password
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    @property
    def host(self) -> str:
        return self.controller.hostname

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def url(self) -> str:
        creds = f"{self.username}:{self.password}@" if self.username else ""
        return f"smtp://{creds}{self.host}:{self.port}"

    def start(self) -> FakeSmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> FakeSmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- scripting

    def fail_next(self, n: int = 1, reply: str = "451 4.7.1 Try again later", at: str = "DATA") -> None:
        """Answer the next n RCPT or DATA commands with ``reply`` ("DROP": close after the final dot)."""
        for _ in range(n):
            self._script.append((at, reply))

    def _next_reply(self, stage: str) -> str | None:
        with self.cond:
            if self._script and self._script[0][0] == stage:
                return self._script.popleft()[1]
        return None

    def _record(self, envelope, dropped: bool = False) -> None:
        parsed: EmailMessage = email.message_from_bytes(envelope.original_content or envelope.content,
                                                        policy=email.policy.SMTP)
        text = html = None
        for part in parsed.walk():
            if part.get_content_type() == "text/plain" and text is None:
                text = part.get_content()
            elif part.get_content_type() == "text/html" and html is None:
                html = part.get_content()
        with self.cond:
            self._messages.append({
                "from": envelope.mail_from, "to": envelope.rcpt_tos[0] if len(envelope.rcpt_tos) == 1
                else list(envelope.rcpt_tos), "rcpt_tos": list(envelope.rcpt_tos), "subject": parsed["Subject"],
                "message_id": parsed["Message-ID"], "text": text or "", "html": html, "message": parsed,
                "raw": envelope.original_content or envelope.content, "dropped": dropped, "time": time.time(),
            })
            self.cond.notify_all()

    # ---- reading

    def messages(self, *, include_dropped: bool = True) -> list[dict[str, Any]]:
        with self.cond:
            return [m for m in self._messages if include_dropped or not m["dropped"]]

    def wait_for(self, predicate, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self._messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"SMTP sink: condition not met in {timeout}s ({len(self._messages)} messages)")
                self.cond.wait(left)
            return list(self._messages)


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
