"""A local SMTP server (aiosmtpd) that captures what would be sent.

Why it exists: the email channel's classification depends on SMTP replies
and on *when* a connection breaks, which only a real server over a real
socket shows.  Every accepted message is kept raw, with its envelope and the
time it arrived, in a thread-safe ledger; it is parsed
(``email.message.EmailMessage``) only when a test reads it, so the server
answers as fast as a real one and a benchmark measures the sender, not this
fake's parser.  :meth:`FakeSmtpServer.wait_for` blocks on a condition
variable, so tests never sleep to synchronise; :meth:`FakeSmtpServer.count`
and :meth:`FakeSmtpServer.times` read the ledger without parsing anything.

Scripted answers per SMTP step (:meth:`~FakeSmtpServer.fail_next`): any reply
such as ``451 4.7.1 Try again later``, ``550 5.1.1 Mailbox unavailable`` or
``554 5.7.1 Message rejected as spam``; ``"DROP"`` closes the connection right
after the final "." of DATA without a reply (or at MAIL / RCPT, before the
message), and ``"STALL"`` answers only
after the client's timeout: the window RFC 1047 warns about (the message is
in the ledger, marked ``dropped``, because a real server may have queued it).
:meth:`~FakeSmtpServer.drop_connections` closes every open connection, as a
server does with idle clients.  Optional AUTH (PLAIN/LOGIN) with one user,
allowed without TLS (tests only).

Run alone: ``python -m vestnik.shared.fakes.smtp --port 8025``.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import logging
import socket
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

Ledger = list[dict[str, Any]]
STAGES = ("MAIL", "RCPT", "DATA")


class _QuietAuthWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "auth_require_tls == False" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_QuietAuthWarning())


class _Handler:
    def __init__(self, sink: FakeSmtpServer) -> None:
        self.sink = sink

    async def handle_MAIL(self, server: SMTP, session: Any, envelope: Any, address: str,  # noqa: N802
                          mail_options: list[str]) -> str:
        reply = self.sink._next_reply("MAIL")
        if reply == "DROP":
            return _drop(server)
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        reply = self.sink._next_reply("RCPT")
        if reply == "DROP":
            return _drop(server)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:  # noqa: N802
        reply = self.sink._next_reply("DATA")
        if reply == "DROP":
            # The message is complete and may be queued, but the client never hears so.
            self.sink._record(envelope, dropped=True)
            if server.transport is not None:
                server.transport.abort()
            return "250 2.0.0 Ok: queued (never seen by the client)"
        if reply == "STALL":
            self.sink._record(envelope, dropped=True)
            await asyncio.sleep(self.sink.stall_s)
            return "250 2.0.0 Ok: queued (too late)"
        if reply:
            return reply
        message_id = self.sink._record(envelope)
        return f"250 2.0.0 Ok: queued as {message_id}"


def _drop(server: SMTP) -> str:
    """Close the connection without answering (a server crash before the message was taken)."""
    if server.transport is not None:
        server.transport.abort()
    return "421 4.3.0 closed (never seen by the client)"


class _SMTP(SMTP):
    """aiosmtpd's server, counting and tracking connections."""

    sink: FakeSmtpServer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # STARTTLS calls this again on the same connection
        super().connection_made(transport)
        if first:
            self.sink._connected(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.sink._disconnected(self)
        super().connection_lost(error)


class _Controller(Controller):
    sink: FakeSmtpServer

    def factory(self) -> SMTP:
        with warnings.catch_warnings():
            # AUTH without TLS is deliberate here (a local test server); aiosmtpd warns on every connection.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
            server = _SMTP(self.handler, **self.SMTP_kwargs)
        server.sink = self.sink
        return server


class FakeSmtpServer:
    """``with FakeSmtpServer() as smtp:`` ... ``smtp.url`` is a ``VESTNIK_SMTP_URL``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, username: str | None = None,
                 password: str | None = None, stall_s: float = 3.0) -> None:
        self._host = host
        self._requested_port = port
        self.username, self.password = username, password
        self.stall_s = stall_s
        self.cond = threading.Condition()
        self._messages: Ledger = []
        self._script: dict[str, deque[str]] = {stage: deque() for stage in STAGES}
        self._live: set[_SMTP] = set()
        self.connections = 0
        self.auth_failures = 0
        self.controller: _Controller | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self.controller is None:
            raise RuntimeError("the SMTP server is not started")
        return int(self.controller.port)

    @property
    def url(self) -> str:
        credentials = f"{self.username}:{self.password}@" if self.username else ""
        return f"smtp://{credentials}{self.host}:{self.port}"

    def start(self) -> FakeSmtpServer:
        if self.controller is not None:
            return self
        last: OSError | None = None
        for _ in range(5):  # aiosmtpd needs a known port; another process may take a free one first
            controller = self._controller(self._requested_port or _free_port(self._host))
            try:
                controller.start()
            except OSError as exc:
                last = exc
                if self._requested_port:
                    raise
                continue
            self.controller = controller
            with self.cond:
                self.connections = 0  # the controller's own start-up probe is not a client
            return self
        raise RuntimeError(f"could not start the SMTP server: {last}")

    def _controller(self, port: int) -> _Controller:
        kwargs: dict[str, Any] = {}
        if self.username:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False, auth_required=True)
        controller = _Controller(_Handler(self), hostname=self._host, port=port,
                                 server_hostname="fake-smtp.local", ready_timeout=5, **kwargs)
        controller.sink = self
        return controller

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def __enter__(self) -> FakeSmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting

    def fail_next(self, n: int = 1, reply: str = "451 4.7.1 Try again later", at: str = "DATA") -> None:
        """Answer the next ``n`` MAIL, RCPT or DATA steps with ``reply``.

        ``reply`` is an SMTP reply line, or ``"DROP"`` (close the connection
        without answering: after the final "." for DATA, when the message may
        have been queued; before anything was taken for MAIL and RCPT), or for
        DATA ``"STALL"`` (answer after ``stall_s``).
        """
        if at not in STAGES:
            raise ValueError(f"at must be one of {STAGES}")
        if reply == "STALL" and at != "DATA":
            raise ValueError(f"{reply} only makes sense after DATA")
        with self.cond:
            self._script[at].extend([reply] * n)

    def drop_after_final_dot(self, n: int = 1) -> None:
        self.fail_next(n, "DROP", at="DATA")

    def stall_after_final_dot(self, n: int = 1) -> None:
        self.fail_next(n, "STALL", at="DATA")

    def drop_connections(self) -> int:
        """Close every open client connection (as servers do with idle clients); return how many."""
        with self.cond:
            live = list(self._live)
        if self.controller is None or not live:
            return 0
        done = threading.Event()

        def close_all() -> None:
            for server in live:
                if server.transport is not None:
                    server.transport.close()
            done.set()

        self.controller.loop.call_soon_threadsafe(close_all)
        done.wait(5)
        with self.cond:  # wait until the server has seen them go
            self.cond.wait_for(lambda: not (self._live & set(live)), timeout=5)
        return len(live)

    def reset(self) -> None:
        with self.cond:
            self._messages.clear()
            for queue in self._script.values():
                queue.clear()

    # ------------------------------------------------------------------ the ledger

    def messages(self, *, include_dropped: bool = True) -> Ledger:
        """Captured messages, oldest first; ``dropped`` ones are those whose sender never heard back."""
        with self.cond:
            return [dict(_parsed(m)) for m in self._messages if include_dropped or not m["dropped"]]

    def count(self, *, include_dropped: bool = True) -> int:
        """How many messages arrived, without parsing any (benchmarks poll this)."""
        with self.cond:
            return sum(1 for m in self._messages if include_dropped or not m["dropped"])

    def times(self) -> list[float]:
        """When each message arrived (``time.time()`` at the end of DATA), oldest first."""
        with self.cond:
            return [m["time"] for m in self._messages]

    def wait_for(self, predicate: Callable[[Ledger], bool], timeout: float = 10.0) -> Ledger:
        """Block until ``predicate(messages)`` holds; return the messages.  TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate([_parsed(m) for m in self._messages]):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"SMTP sink: condition not met within {timeout}s "
                                       f"({len(self._messages)} messages)")
                self.cond.wait(left)
            return [dict(m) for m in self._messages]

    # ------------------------------------------------------------------ called from the server's loop

    def _next_reply(self, stage: str) -> str | None:
        with self.cond:
            queue = self._script[stage]
            return queue.popleft() if queue else None

    def _connected(self, server: _SMTP) -> None:
        with self.cond:
            self.connections += 1
            self._live.add(server)
            self.cond.notify_all()

    def _disconnected(self, server: _SMTP) -> None:
        with self.cond:
            self._live.discard(server)
            self.cond.notify_all()

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.username
              and auth_data.password.decode() == self.password)
        if not ok:
            with self.cond:
                self.auth_failures += 1
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535 itself

    def _record(self, envelope: Any, dropped: bool = False) -> str:
        """Keep the raw message; parsing waits until someone reads it (see :func:`_parsed`)."""
        raw: bytes = envelope.original_content or b""
        rcpt_tos = list(envelope.rcpt_tos)
        record = {
            "from": envelope.mail_from,
            "to": rcpt_tos[0] if len(rcpt_tos) == 1 else rcpt_tos,
            "rcpt_tos": rcpt_tos,
            "raw": raw,
            "dropped": dropped,
            "time": time.time(),
        }
        message_id = _header(raw, b"message-id")
        with self.cond:
            self._messages.append(record)
            self.cond.notify_all()
            return message_id or f"fake-{len(self._messages)}"


class _LeanEnvelope:
    """What :meth:`FakeSmtpServer._record` reads of aiosmtpd's envelope."""

    def __init__(self) -> None:
        self.mail_from: str | None = None
        self.rcpt_tos: list[str] = []
        self.original_content: bytes | None = None


class _LeanConnection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock


class LeanSmtpSink(FakeSmtpServer):
    """The same ledger and scripted replies as :class:`FakeSmtpServer` behind a lean server, for benchmarks.

    aiosmtpd costs about 0.45 ms of CPU per message (``bench.fakes_cpu``): it reads DATA line by line
    and parses every address with the ``email`` package, and on the two-core bench machine that
    time is taken from Vestnik.  This sink speaks just enough SMTP for the product's client: a
    thread per connection, EHLO/HELO (offering PIPELINING, as providers do), MAIL, RCPT, DATA (read
    up to the final "." in one go, dots unstuffed as aiosmtpd does), RSET, NOOP, QUIT, and the
    scripted replies, ``DROP`` and ``STALL`` of :meth:`~FakeSmtpServer.fail_next`.  No AUTH, no
    STARTTLS.  Tests use :class:`FakeSmtpServer` (aiosmtpd, a real SMTP server, no PIPELINING); the
    benchmarks and the email channel's pipelining tests use this one.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, stall_s: float = 3.0) -> None:
        super().__init__(host, port, stall_s=stall_s)
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the SMTP server is not started")
        return int(self._listener.getsockname()[1])

    def start(self) -> LeanSmtpSink:
        if self._listener is None:
            self._stopping.clear()
            self._listener = socket.create_server((self._host, self._requested_port), backlog=64)
            self._spawn(self._accept, "lean-smtp-accept")
        return self

    def stop(self) -> None:
        if self._listener is None:
            return
        self._stopping.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self._listener.close()
        self.drop_connections()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        self._listener = None

    def drop_connections(self) -> int:
        with self.cond:
            live = list(self._live)
        for conn in live:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
            except OSError:
                pass
        with self.cond:
            self.cond.wait_for(lambda: not (self._live & set(live)), timeout=5)
        return len(live)

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept(self) -> None:
        listener = self._listener
        while listener is not None and not self._stopping.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._spawn(self._serve, "lean-smtp", sock)

    def _serve(self, sock: socket.socket) -> None:
        conn = _LeanConnection(sock)
        self._connected(conn)  # type: ignore[arg-type]
        try:
            sock.sendall(b"220 fake-smtp.local ESMTP lean sink\r\n")
            self._session(sock)
        except OSError:
            pass
        finally:
            self._disconnected(conn)  # type: ignore[arg-type]
            sock.close()

    def _session(self, sock: socket.socket) -> None:
        buffer = b""
        greeted = False
        envelope = _LeanEnvelope()
        while True:
            end = buffer.find(b"\r\n")
            while end < 0:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                end = buffer.find(b"\r\n")
            line, buffer = buffer[:end].decode("utf-8", "replace"), buffer[end + 2:]
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                greeted, envelope = True, _LeanEnvelope()
                # PIPELINING (RFC 2920), as real providers offer it: the client sends MAIL, RCPT and DATA
                # in one write, and this loop answers them one by one from its buffer.
                reply = "250-fake-smtp.local\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 HELP"
            elif verb == "HELO":
                greeted, envelope, reply = True, _LeanEnvelope(), "250 fake-smtp.local"
            elif verb == "MAIL":
                if not greeted:
                    reply = "503 Error: send HELO first"
                else:
                    reply = self._next_reply("MAIL") or ""
                    if reply == "DROP":
                        return
                    if not reply:
                        envelope = _LeanEnvelope()
                        envelope.mail_from = _bare(arg, "FROM:")
                        reply = "250 2.1.0 OK"
            elif verb == "RCPT":
                if envelope.mail_from is None:
                    reply = "503 Error: need MAIL command"
                else:
                    reply = self._next_reply("RCPT") or ""
                    if reply == "DROP":
                        return
                    if not reply:
                        envelope.rcpt_tos.append(_bare(arg, "TO:"))
                        reply = "250 2.1.5 OK"
            elif verb == "DATA":
                if not envelope.rcpt_tos:
                    sock.sendall(b"503 Error: need RCPT command\r\n")
                    continue
                sock.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                data = b"\r\n" + buffer
                end = data.find(b"\r\n.\r\n")
                while end < 0:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                    end = data.find(b"\r\n.\r\n", max(0, len(data) - len(chunk) - 4))
                content, buffer = data[2:end + 2], data[end + 5:]
                if b"\r\n." in content or content.startswith(b"."):  # unstuff, as aiosmtpd does
                    content = b"".join(part[1:] if part.startswith(b".") else part
                                       for part in content.splitlines(keepends=True))
                envelope.original_content = content
                reply = self._end_of_data(envelope)
                envelope = _LeanEnvelope()
                if reply == "DROP":
                    return
            elif verb == "RSET":
                envelope, reply = _LeanEnvelope(), "250 OK"
            elif verb == "NOOP":
                reply = "250 OK"
            elif verb == "QUIT":
                sock.sendall(b"221 Bye\r\n")
                return
            else:
                reply = f'500 Error: command "{verb}" not recognized'
            sock.sendall(reply.encode() + b"\r\n")

    def _end_of_data(self, envelope: _LeanEnvelope) -> str:
        reply = self._next_reply("DATA")
        if reply == "DROP":
            self._record(envelope, dropped=True)
            return "DROP"
        if reply == "STALL":
            self._record(envelope, dropped=True)
            self._stopping.wait(self.stall_s)
            return "250 2.0.0 Ok: queued (too late)"
        if reply:
            return reply
        return f"250 2.0.0 Ok: queued as {self._record(envelope)}"


def _bare(arg: str, prefix: str) -> str:
    """The address of ``FROM:<a@b> SIZE=1`` (what aiosmtpd's envelope keeps)."""
    value = arg[len(prefix):] if arg.upper().startswith(prefix) else arg
    value = value.strip().split(" ", 1)[0]
    return value[1:-1] if value.startswith("<") and value.endswith(">") else value


def _header(raw: bytes, name: bytes) -> str:
    """One header's value from the raw message, without parsing it (the reply's queue id)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().decode("ascii", "replace")
    return ""


def _parsed(record: dict[str, Any]) -> dict[str, Any]:
    """Add the parsed fields to a ledger record, once (called under the ledger's lock)."""
    if "message" in record:
        return record
    parsed: EmailMessage = email.message_from_bytes(record["raw"], policy=email.policy.default)  # type: ignore[assignment]
    text = html = None
    attachments = []
    for part in parsed.walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment":
            attachments.append({"filename": part.get_filename(), "mime_type": part.get_content_type(),
                                "content": part.get_payload(decode=True)})
        elif part.get_content_type() == "text/plain" and text is None:
            text = part.get_content()
        elif part.get_content_type() == "text/html" and html is None:
            html = part.get_content()
    record.update({
        "subject": str(parsed["Subject"] or ""),
        "message_id": str(parsed["Message-ID"] or ""),
        "text": (text or "").replace("\r\n", "\n"),
        "html": html.replace("\r\n", "\n") if html is not None else None,
        "attachments": attachments,
        "message": parsed,
    })
    return record


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local SMTP server that captures messages")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args(argv)
    with FakeSmtpServer(args.host, args.port) as sink:
        print(f"SMTP sink on {sink.url}; Ctrl-C stops it", flush=True)  # noqa: T201
        seen = 0
        try:
            while True:
                messages = sink.wait_for(lambda m, after=seen: len(m) > after, timeout=3600)
                for m in messages[seen:]:
                    print(f"{m['to']}: {m['subject']}", flush=True)  # noqa: T201
                seen = len(messages)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
