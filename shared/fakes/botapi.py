"""A local fake of the Telegram Bot API, for the demo and the tests.

It answers like the real one: the same JSON envelopes, status codes and
descriptions, including ``429`` with ``parameters.retry_after``, ``403 bot
was blocked by the user``, ``400 chat not found`` and ``5xx``.  Accepted
messages go to a ledger that tests and the demo read.

Served by ``ThreadingHTTPServer`` with HTTP/1.1 keep-alive and Nagle off
(``disable_nagle_algorithm``): without that, Nagle plus delayed ACKs cap a
connection at about 23 requests per second and a benchmark measures the fake.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Fault:
    kind: str  # "429" | "500" | "502" | "403" | "400" | "stall"
    retry_after: int = 3


@dataclass
class BotApiState:
    token: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, chat_id)
    blocked: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)
    faults: deque[Fault] = field(default_factory=deque)
    fail_every: tuple[int, str] | None = None  # every n-th call fails with kind
    stall_s: float = 2.0
    updates: list[dict[str, Any]] = field(default_factory=list)
    webhook_url: str | None = None
    cond: threading.Condition = field(default_factory=threading.Condition)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    call_count: int = 0


def _error(code: int, description: str, **parameters: Any) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return code, body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    def _reply(self, status: int, body: dict[str, Any] | str, content_type: str = "application/json") -> None:
        raw = (json.dumps(body, ensure_ascii=False) if not isinstance(body, str) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch({k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}, None)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        document = None
        if ctype.startswith("application/json"):
            params = json.loads(raw or b"{}")
        elif ctype.startswith("multipart/form-data"):
            params, document = _parse_multipart(ctype, raw)
        else:
            params = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        self._dispatch(params, document)

    def _dispatch(self, params: dict[str, Any], document: tuple[str, bytes] | None) -> None:
        state = self.server.state
        parts = urlsplit(self.path).path.strip("/").split("/")
        if len(parts) != 2 or not parts[0].startswith("bot"):
            self._reply(*_error(404, "Not Found"))
            return
        if parts[0][3:] != state.token:
            self._reply(*_error(401, "Unauthorized"))
            return
        method = parts[1]
        chat = str(params.get("chat_id", ""))
        with state.cond:
            state.call_count += 1
            state.calls.append((method, chat))
            fault = state.faults.popleft() if state.faults else None
            if fault is None and state.fail_every and state.call_count % state.fail_every[0] == 0:
                fault = Fault(state.fail_every[1])
        if fault is not None and method in ("sendMessage", "sendDocument"):
            if fault.kind == "stall":
                # Accept the message, then stall past the client's read timeout.
                self._accept(method, chat, params, document)
                time.sleep(state.stall_s)
                self._reply(200, {"ok": True, "result": {}})
                return
            if fault.kind == "429":
                self._reply(*_error(429, f"Too Many Requests: retry after {fault.retry_after}",
                                    retry_after=fault.retry_after))
                return
            if fault.kind in ("500", "502", "503"):
                if fault.kind == "502":
                    self._reply(502, "<html><body>502 Bad Gateway</body></html>", "text/html")
                else:
                    self._reply(*_error(int(fault.kind), "Internal Server Error"))
                return
            if fault.kind == "403":
                self._reply(*_error(403, "Forbidden: bot was blocked by the user"))
                return
            if fault.kind == "400":
                self._reply(*_error(400, "Bad Request: chat not found"))
                return
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            self._reply(*_error(404, "Not Found: method not found"))
            return
        handler(chat, params, document)

    # ---- methods

    def _accept(self, method: str, chat: str, params: dict[str, Any], document: tuple[str, bytes] | None
                ) -> dict[str, Any]:
        state = self.server.state
        with state.cond:
            message_id = next(state.ids)
            record = {
                "method": method, "chat_id": chat, "message_id": message_id,
                "text": params.get("text") or params.get("caption") or "",
                "parse_mode": params.get("parse_mode"),
                "reply_markup": _json_field(params.get("reply_markup")),
                "document": {"name": document[0], "size": len(document[1]), "content": document[1]}
                if document else None,
                "time": time.time(),
            }
            state.messages.append(record)
            state.cond.notify_all()
        return record

    def _send(self, chat: str, params: dict[str, Any], document: tuple[str, bytes] | None, method: str) -> None:
        state = self.server.state
        if chat in state.blocked:
            self._reply(*_error(403, "Forbidden: bot was blocked by the user"))
            return
        if chat in state.unknown or not chat.lstrip("-").isdigit():
            self._reply(*_error(400, "Bad Request: chat not found"))
            return
        text = params.get("text") or params.get("caption") or ""
        limit = 4096 if method == "sendMessage" else 1024
        if len(text) > limit:
            self._reply(*_error(400, "Bad Request: message is too long" if limit == 4096
                                else "Bad Request: message caption is too long"))
            return
        if method == "sendMessage" and not text.strip():
            self._reply(*_error(400, "Bad Request: message text is empty"))
            return
        record = self._accept(method, chat, params, document)
        result = {"message_id": record["message_id"], "date": int(record["time"]),
                  "chat": {"id": int(chat), "type": "private"}, "text": text}
        self._reply(200, {"ok": True, "result": result})

    def _m_sendMessage(self, chat, params, document) -> None:  # noqa: N802
        self._send(chat, params, None, "sendMessage")

    def _m_sendDocument(self, chat, params, document) -> None:  # noqa: N802
        if document is None and not params.get("document"):
            self._reply(*_error(400, "Bad Request: there is no document in the request"))
            return
        self._send(chat, params, document, "sendDocument")

    def _m_getMe(self, chat, params, document) -> None:  # noqa: N802
        self._reply(200, {"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "Vestnik",
                                                 "username": "vestnik_demo_bot"}})

    def _m_getUpdates(self, chat, params, document) -> None:  # noqa: N802
        state = self.server.state
        offset = int(params.get("offset") or 0)
        timeout = min(float(params.get("timeout") or 0), 5.0)
        deadline = time.time() + timeout
        with state.cond:
            while True:
                pending = [u for u in state.updates if u["update_id"] >= offset]
                if pending or time.time() >= deadline:
                    break
                state.cond.wait(max(0.0, deadline - time.time()))
        self._reply(200, {"ok": True, "result": pending})

    def _m_answerCallbackQuery(self, chat, params, document) -> None:  # noqa: N802
        self._reply(200, {"ok": True, "result": True})

    def _m_setWebhook(self, chat, params, document) -> None:  # noqa: N802
        self.server.state.webhook_url = params.get("url")
        self._reply(200, {"ok": True, "result": True, "description": "Webhook was set"})

    def _m_deleteWebhook(self, chat, params, document) -> None:  # noqa: N802
        self.server.state.webhook_url = None
        self._reply(200, {"ok": True, "result": True, "description": "Webhook was deleted"})


def _json_field(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _parse_multipart(content_type: str, raw: bytes) -> tuple[dict[str, Any], tuple[str, bytes] | None]:
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    params: dict[str, Any] = {}
    document = None
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename:
            document = (filename, payload)
        elif name:
            params[name] = payload.decode()
    return params, document


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: BotApiState


class FakeBotApi:
    """``with FakeBotApi() as api: ... api.url`` is a Bot API base URL."""

    def __init__(self, token: str = "123456:TEST-token-for-the-fake", host: str = "127.0.0.1", port: int = 0  # noqa: S107
                 ) -> None:
        self.token = token
        self._server = _Server((host, port), _Handler)
        self._server.state = BotApiState(token=token)
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> BotApiState:
        return self._server.state

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> FakeBotApi:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-bot-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeBotApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- scripting

    def block_chat(self, chat_id: str | int) -> None:
        self.state.blocked.add(str(chat_id))

    def unknown_chat(self, chat_id: str | int) -> None:
        self.state.unknown.add(str(chat_id))

    def fail_next(self, n: int = 1, kind: str = "500", retry_after: int = 3) -> None:
        for _ in range(n):
            self.state.faults.append(Fault(kind, retry_after))

    def fail_every(self, n: int, kind: str = "500") -> None:
        """Every n-th call fails (deterministic; n=2 is "half of the calls")."""
        self.state.fail_every = (n, kind)

    def push_update(self, update: dict[str, Any]) -> None:
        with self.state.cond:
            update.setdefault("update_id", len(self.state.updates) + 1)
            self.state.updates.append(update)
            self.state.cond.notify_all()

    # ---- reading

    def messages(self) -> list[dict[str, Any]]:
        with self.state.cond:
            return list(self.state.messages)

    def wait_for(self, predicate, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until ``predicate(messages)`` is true; return the messages."""
        deadline = time.monotonic() + timeout
        with self.state.cond:
            while not predicate(self.state.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fake Bot API: condition not met in {timeout}s "
                                       f"({len(self.state.messages)} messages)")
                self.state.cond.wait(left)
            return list(self.state.messages)
