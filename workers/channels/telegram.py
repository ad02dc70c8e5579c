"""Telegram through the Bot API, in HTML parse mode.

Why it looks like this:

- **The hot path is a kept HTTP/1.1 connection written directly**:
  ``sendMessage`` (a JSON body) goes over one kept-alive connection per
  sending thread (``threading.local``, :class:`_KeptConnection`): the request
  in one write, the answer read straight from the socket.  That is about half
  the CPU of ``http.client`` per call, and an eighth of ``requests``.
  Before a kept connection is reused it is probed (a server that closed an
  idle connection has sent its FIN): a dead one is replaced before anything
  is written, so a stale connection never makes a send ambiguous.
  ``requests`` stays where it earns its place: uploads (``sendDocument``,
  multipart) and the other Bot API calls (``getUpdates``, ``setWebhook``...).
- Every Bot API call goes through :meth:`TelegramChannel._request`, and every
  answer is classified in :func:`classify`, from a table of the Bot API's
  known descriptions (the Healthchecks approach).  ``send``, ``get_me`` and
  ``api_call`` (getUpdates, answerCallbackQuery, setWebhook, ...) share it.
- The bot token is part of every URL, and ``requests`` puts the URL in its
  exception messages.  So no ``requests`` exception text is passed on: reasons
  are built here, raised outside the ``except`` block (no chained context that
  a traceback would print), and anything taken from an answer is redacted.
- A read timeout means the request was sent and Telegram may have delivered
  it (python-telegram-bot #1045): that is ``uncertain``, never ``transient``;
  so is a connection lost after the request was written.  Failing to connect
  (refused, connect timeout, DNS) or to write the request is ``transient``.
- Limits are class data (Bots FAQ): 4096 characters a message, 1024 a caption.
  Longer texts are split at paragraph, then line, then word boundaries, with
  HTML tags closed at the end of a part and reopened at the start of the next
  (see :func:`split_html`); the buttons go on the last part and the first
  part's message id is returned.  If a later part fails after an earlier one
  was delivered, the outcome is ``uncertain`` (a retry would repeat the
  delivered part), unless the failure is permanent anyway.
- A document whose text fits a caption is sent as one ``sendDocument``; a
  longer text is sent first with ``sendMessage`` and the document follows
  without a caption, carrying the buttons (they belong to the last message).
"""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, ClassVar

import requests

from vestnik.shared.config import Settings
from vestnik.shared.rendering import telegram_html, unknown_telegram_tags
from vestnik.shared.unsubscribe import button_label
from vestnik.shared.wire import CHAT_ID_PATTERN
from vestnik.workers.channels.base import Addressable, Button, Channel, DeliveryError, Outcome, RenderedMessage
from vestnik.workers.limits import ChannelRules, Rule

#: a client's address: a chat id, the wire's rule (the API, the CSV, the admin and the profile take the same)
_CHAT_ID = re.compile(CHAT_ID_PATTERN)
#: a group or channel as an admin names it to register it: its id or its public @username (a bot can post to a
#: public channel by name; a person's chat has only its id)
_CHAT_REF = re.compile(r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31}")
DEFAULT_API_BASE = "https://api.telegram.org"

#: Descriptions (lower-case substrings) meaning the recipient cannot be reached at this
#: address any more: the delivery code turns these into "address unreachable".
UNREACHABLE_DESCRIPTIONS: tuple[str, ...] = (
    "bot was blocked by the user",
    "user is deactivated",
    "bot was kicked",  # "...from the group chat", "...from the supergroup chat", "...from the channel chat"
    "bot is not a member",
    "bot can't initiate conversation with a user",
    "bot can't send messages to bots",
    "the group chat was deleted",
    "group chat was deactivated",
    "chat not found",
    "need administrator rights in the channel chat",
    "not enough rights to send text messages",
    "user not found",
    "peer_id_invalid",
)

#: Methods whose success means a message reached a chat (for the partial-delivery rule).
_SEND_METHODS = frozenset({"sendMessage", "sendDocument"})

_RETRY_AFTER_IN_TEXT = re.compile(r"retry after (\d+)", re.IGNORECASE)


class TelegramChannel(Channel):
    """Sends rendered messages (Telegram HTML) to a chat id through the Bot API."""

    name: ClassVar[str] = "telegram"
    preference_field: ClassVar[str] = "notifications_telegram_enabled"
    address_field: ClassVar[str | None] = "telegram_chat_id"
    body_maxlen: ClassVar[int] = 4096
    caption_maxlen: ClassVar[int] = 1024
    switch_field: ClassVar[str] = "telegram_enabled"
    address_label: ClassVar[str] = "Telegram chat id"
    supports_buttons: ClassVar[bool] = True
    supports_chats: ClassVar[bool] = True  # groups and channels (chat_facts)
    supports_attachments: ClassVar[bool] = True
    #: a bot uploads documents of up to 50 MB (Bot API, sendDocument)
    max_attachment_bytes: ClassVar[int] = 50 * 1024 * 1024
    attachment_sources: ClassVar[frozenset[str]] = frozenset({"url", "file", "telegram_file_id"})
    supports_html: ClassVar[bool] = True  # Telegram's subset (finish_text)
    callback_data_maxlen: ClassVar[int] = 64  # bytes

    def __init__(
        self,
        *,
        token: str,
        api_base: str = DEFAULT_API_BASE,
        connect_timeout_s: float = 5,
        read_timeout_s: float = 15,
        session: requests.Session | None = None,
    ) -> None:
        self._token = token
        self.api_base = api_base.rstrip("/")
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._session = session if session is not None else requests.Session()
        parts = urllib.parse.urlsplit(self.api_base)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._path = parts.path.rstrip("/")
        self._local = threading.local()
        self._open: list[_KeptConnection] = []
        self._open_lock = threading.Lock()
        #: connections opened so far (tests check that they are kept)
        self.connects = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> TelegramChannel:
        return cls(
            token=settings.telegram_token,
            api_base=settings.telegram_api_base,
            connect_timeout_s=settings.telegram_connect_timeout_s,
            read_timeout_s=settings.telegram_read_timeout_s,
        )

    @property
    def configured(self) -> bool:
        return bool(self._token)

    def __repr__(self) -> str:
        return f"TelegramChannel(api_base={self.api_base!r}, configured={self.configured})"

    def address_of(self, client: Addressable) -> str | None:
        chat = client.telegram_chat_id
        if chat is None:
            return None
        return str(chat).strip() or None

    def limit_key(self, address: str) -> str | None:
        return address

    # ------------------------------------------------------------------ what the channel declares

    def check_address(self, value: str) -> str:
        chat = str(value).strip()
        if not _CHAT_ID.fullmatch(chat):
            raise ValueError(f"must be a Telegram chat id (a number), got {chat[:40]!r}")
        return chat

    @staticmethod
    def check_chat_ref(value: str) -> str:
        """A group or channel to register: its chat id or public @username; ValueError otherwise."""
        ref = str(value).strip()
        if not _CHAT_REF.fullmatch(ref):
            raise ValueError(f"must be a Telegram chat id (a number) or a public @username, got {ref[:40]!r}")
        return ref

    @classmethod
    def finish_text(cls, text: str) -> str:
        return telegram_html(text)

    @classmethod
    def template_problems(cls, subject: str, body: str) -> list[tuple[str, str]]:
        problems = super().template_problems(subject, body)
        bad = unknown_telegram_tags(body)
        if bad:
            problems.append(("body", "Telegram does not accept these tags: " + ", ".join(sorted(bad))
                             + " (allowed: b, i, u, s, a, code, pre, blockquote, span class=tg-spoiler)"))
        return problems

    @classmethod
    def unsubscribe(cls, url: str, locale: str) -> tuple[dict[str, str], tuple[tuple[Button, ...], ...]]:
        return {}, ((Button(button_label(locale), url=url),),)

    @classmethod
    def limit_rules(cls, settings: Settings) -> ChannelRules:
        chat = Rule.per_second("chat", settings.telegram_chat_rate_per_s)
        group = Rule("group", settings.telegram_group_rate_per_min, settings.telegram_group_window_s)

        def per_chat(key: str) -> tuple[Rule, ...]:
            # Groups, supergroups and channels have negative ids (or an @name): 20 a minute there too.
            return (chat, group) if key.startswith(("-", "@")) else (chat,)

        # The bot's 30/s goes at an even pace: a burst of 30 would queue on the connections (answers come
        # later, and each send counts until its answer plus a second), and Telegram prefers it spread.
        return ChannelRules(overall=(Rule.per_second("global", settings.telegram_rate_per_s, spread=True),),
                            per_key=per_chat)

    @classmethod
    def connections(cls, settings: Settings) -> int:
        return settings.telegram_connections

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "api_base": self.api_base,
            "configured": self.configured,
            "connect_timeout_s": self.connect_timeout_s,
            "read_timeout_s": self.read_timeout_s,
        }

    def close(self) -> None:
        self._session.close()
        with self._open_lock:
            conns, self._open = self._open, []
        for conn in conns:
            conn.close()

    # ------------------------------------------------------------------ sending

    def send(self, address: str, message: RenderedMessage) -> str:
        """Send text (split when too long) or a document; return the first message id."""
        markup = _reply_markup(message.buttons)
        delivered: list[str] = []
        try:
            if message.attachment is not None and tg_len(message.text) <= self.caption_maxlen:
                delivered.append(self._send_document(address, message, caption=message.text, markup=markup))
            elif message.attachment is not None:
                self._send_text(address, message.text, None, delivered)
                self._send_document(address, message, caption=None, markup=markup)
            else:
                self._send_text(address, message.text, markup, delivered)
        except DeliveryError as exc:
            if delivered:
                raise _after_partial_delivery(exc, delivered) from None
            raise
        return delivered[0]

    def _send_text(self, chat: str, text: str, markup: dict[str, Any] | None, delivered: list[str]) -> None:
        parts = split_html(text, self.body_maxlen)
        for i, part in enumerate(parts):
            params: dict[str, Any] = {
                "chat_id": chat,
                "text": part,
                "parse_mode": "HTML",
                "link_preview_options": {"is_disabled": True},
            }
            if markup is not None and i == len(parts) - 1:
                params["reply_markup"] = markup
            result = self._post_json("sendMessage", params)
            delivered.append(_message_id(result))

    def _send_document(self, chat: str, message: RenderedMessage, *, caption: str | None,
                       markup: dict[str, Any] | None) -> str:
        attachment = message.attachment
        if attachment is None:  # pragma: no cover - callers check
            raise ValueError("no attachment")
        data: dict[str, str] = {"chat_id": chat}
        if caption:
            data["caption"] = caption
            data["parse_mode"] = "HTML"
        if markup is not None:
            data["reply_markup"] = json.dumps(markup, ensure_ascii=False)
        if attachment.telegram_file_id:  # a file Telegram already holds: sent by its id, no upload
            data["document"] = attachment.telegram_file_id
            return _message_id(self._request("sendDocument", data=data))
        files = {"document": (attachment.filename, attachment.content, attachment.mime_type)}
        return _message_id(self._request("sendDocument", data=data, files=files))

    # ------------------------------------------------------------------ other Bot API calls

    def api_call(self, method: str, **params: Any) -> Any:
        """Call any Bot API method with JSON parameters; return its ``result``.

        Raises DeliveryError classified like a send.  For ``getUpdates`` the read
        timeout is extended by the long-poll ``timeout`` parameter.
        """
        read_timeout = self.read_timeout_s
        if method == "getUpdates" and params.get("timeout"):
            read_timeout += float(params["timeout"])
        return self._request(method, json_body=params, read_timeout_s=read_timeout)

    def get_me(self) -> dict[str, Any]:
        """The bot's own user (checks the token and the API base)."""
        result = self.api_call("getMe")
        return result if isinstance(result, dict) else {}

    def chat_facts(self, ref: str) -> ChatFacts:
        """What the Bot API says of a group or channel and of the bot in it: ``getMe``, ``getChat``,
        ``getChatMember``.  ``ref`` is a chat id (-100...) or a public @username.  Raises DeliveryError
        (classified like a send: ``chat not found``, ``bot was kicked`` are permanent and unreachable)."""
        ref = self.check_chat_ref(ref)
        me = self.get_me()
        chat = self.api_call("getChat", chat_id=ref)
        if not isinstance(chat, dict) or "id" not in chat:
            raise DeliveryError.permanent("getChat: the Bot API answered without a chat")
        kind = str(chat.get("type") or "")
        if kind == "private":
            raise DeliveryError.permanent("getChat: this is a private chat with a person, not a group or channel")
        member = self.api_call("getChatMember", chat_id=chat["id"], user_id=me.get("id"))
        member = member if isinstance(member, dict) else {}
        status = str(member.get("status") or "")
        return ChatFacts(address=str(chat["id"]), kind=kind, title=str(chat.get("title") or ""),
                         username=chat.get("username"), bot_status=status,
                         can_post=bot_can_post(kind, member, chat.get("permissions")))

    # ------------------------------------------------------------------ the hot path: http.client

    def _connection(self) -> tuple[_KeptConnection, bool]:
        """This thread's kept connection (reused=True) or a new one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and not _closed_by_peer(conn.sock):
            return conn, True
        if conn is not None:
            conn.close()
        conn = _KeptConnection(self._host, self._port, self._https)
        self._local.conn = conn
        with self._open_lock:
            self._open.append(conn)
        return conn, False

    def _post_json(self, method: str, params: dict[str, Any]) -> Any:
        """POST a JSON body on this thread's kept connection; classify like every other call."""
        if not self._token:
            raise DeliveryError.permanent("telegram is not configured (VESTNIK_TELEGRAM_TOKEN is empty)")
        body = json.dumps(params, ensure_ascii=False).encode()
        conn, _ = self._connection()
        error: DeliveryError | None = None
        status, raw = 0, b""
        # Each branch builds its own reason: nothing here may carry the URL (it holds the token).
        if conn.sock is None:
            try:
                conn.connect(self.connect_timeout_s)
                self.connects += 1
            except TimeoutError:
                error = DeliveryError.transient(f"{method}: no connection to the Bot API within "
                                                f"{self.connect_timeout_s}s")
            except OSError as exc:
                error = DeliveryError.transient(f"{method}: connection to the Bot API failed ({type(exc).__name__})")
            if error is not None:
                conn.close()
                raise error
        try:
            conn.write(f"{self._path}/bot{self._token}/{method}", body, self.read_timeout_s)
        except OSError as exc:
            # The request did not get out whole: Telegram cannot have acted on it.
            conn.close()
            raise DeliveryError.transient(f"{method}: connection lost while sending ({type(exc).__name__})") from None
        try:
            status, raw = conn.read_answer()
        except TimeoutError:
            error = DeliveryError.uncertain(f"{method}: no answer within {self.read_timeout_s}s after sending; "
                                            "the message may have been delivered")
        except (OSError, http.client.HTTPException) as exc:
            error = DeliveryError.uncertain(f"{method}: connection lost after sending ({type(exc).__name__}); "
                                            "the message may have been delivered")
        if error is not None:
            conn.close()
            raise error
        try:
            return classify(method, status, raw)
        except DeliveryError as exc:
            exc.reason = self._redact(exc.reason)
            exc.args = (exc.reason,)
            raise

    # ------------------------------------------------------------------ the other calls: requests

    def _request(self, method: str, *, json_body: dict[str, Any] | None = None,
                 data: dict[str, str] | None = None, files: dict[str, Any] | None = None,
                 read_timeout_s: float | None = None) -> Any:
        if not self._token:
            raise DeliveryError.permanent("telegram is not configured (VESTNIK_TELEGRAM_TOKEN is empty)")
        url = f"{self.api_base}/bot{self._token}/{method}"
        read_timeout = read_timeout_s if read_timeout_s is not None else self.read_timeout_s
        timeout = (self.connect_timeout_s, read_timeout)
        response: requests.Response | None = None
        error: DeliveryError | None = None
        # Each branch builds its own reason: requests' messages contain the URL, hence the token.
        try:
            response = self._session.post(url, json=json_body, data=data, files=files, timeout=timeout)
        except requests.ConnectTimeout:
            error = DeliveryError.transient(f"{method}: no connection to the Bot API within {timeout[0]}s")
        except requests.ReadTimeout:
            # The request was sent: Telegram may have delivered it (python-telegram-bot #1045).
            error = DeliveryError.uncertain(f"{method}: no answer within {timeout[1]}s after sending; "
                                            "the message may have been delivered")
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
            # The answer had started to arrive: Telegram has processed the request.
            error = DeliveryError.uncertain(f"{method}: the Bot API's answer was cut off")
        except requests.ConnectionError as exc:
            error = DeliveryError.transient(f"{method}: connection to the Bot API failed ({_kind_of(exc)})")
        except requests.RequestException as exc:
            error = DeliveryError.transient(f"{method}: request failed ({type(exc).__name__})")
        if error is not None:
            raise error
        assert response is not None
        try:
            return classify(method, response.status_code, response.content)
        except DeliveryError as exc:
            exc.reason = self._redact(exc.reason)
            exc.args = (exc.reason,)
            raise

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text


# ---------------------------------------------------------------------- groups and channels


@dataclass(frozen=True)
class ChatFacts:
    """A group or channel as the Bot API describes it, and the bot's standing there."""

    address: str  # the numeric chat id, whatever ``ref`` was
    kind: str  # group, supergroup, channel
    title: str
    username: str | None
    bot_status: str  # creator, administrator, member, restricted, left, kicked
    can_post: bool


def bot_can_post(kind: str, member: dict[str, Any], permissions: Any = None) -> bool:
    """Whether the bot may post, from its ``ChatMember`` (and a group's default ``permissions``): in a
    channel only its creator or an administrator with ``can_post_messages``; in a group any member,
    unless restricted or the group lets members send nothing."""
    status = str(member.get("status") or "")
    if status == "creator":
        return True
    if kind == "channel":
        return status == "administrator" and bool(member.get("can_post_messages"))
    if status == "administrator":
        return True
    if status == "restricted":
        return bool(member.get("is_member")) and bool(member.get("can_send_messages"))
    if status == "member":
        return not (isinstance(permissions, dict) and permissions.get("can_send_messages") is False)
    return False


# ---------------------------------------------------------------------- the hot path's connection

#: the most an answer's head (status line and headers) and its body may take
_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024


class _KeptConnection:
    """One kept-alive HTTP/1.1 connection for ``sendMessage``: the request written in one ``sendall``, the
    answer read straight from the socket (``Content-Length``, chunked, or to the end when the server
    closes).  ``http.client`` costs about twice the CPU a call (a socket file per answer, the email
    package parsing its headers).  Errors are ``OSError`` (``TimeoutError`` included) and
    ``http.client.HTTPException`` subclasses, as with ``http.client``."""

    __slots__ = ("_buffer", "_host_header", "host", "https", "port", "sock")

    def __init__(self, host: str, port: int, https: bool) -> None:
        self.host, self.port, self.https = host, port, https
        default = 443 if https else 80
        self._host_header = (host if port == default else f"{host}:{port}").encode("idna")
        self.sock: socket.socket | None = None
        self._buffer = b""

    def connect(self, timeout_s: float) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.https:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._buffer = b""

    def write(self, path: str, body: bytes, timeout_s: float) -> None:
        assert self.sock is not None
        self.sock.settimeout(timeout_s)
        self.sock.sendall(b"POST %s HTTP/1.1\r\nHost: %s\r\nAccept-Encoding: identity\r\n"
                          b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                          % (path.encode(), self._host_header, len(body), body))

    def _more(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(65536)
        if not data:
            raise http.client.RemoteDisconnected("the server closed the connection before its answer ended")
        self._buffer += data

    def _line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                line, self._buffer = self._buffer[:end], self._buffer[end + 2:]
                return line
            if len(self._buffer) > _MAX_HEAD:
                raise http.client.LineTooLong("an answer's line")
            self._more()

    def _take(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._more()
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def read_answer(self) -> tuple[int, bytes]:
        """The status and body of the next answer (1xx answers skipped); closes when the server asked."""
        while True:
            while self._buffer.find(b"\r\n\r\n") < 0:
                if len(self._buffer) > _MAX_HEAD:
                    raise http.client.LineTooLong("an answer's head")
                self._more()
            head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            parts = lines[0].split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                raise http.client.BadStatusLine(repr(lines[0][:40]))
            status = int(parts[1])
            if 100 <= status < 200:
                continue
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            break
        close = parts[0] == b"HTTP/1.0" or headers.get(b"connection", b"").lower() == b"close"
        if status in (204, 304):
            body = b""
        elif b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            chunks = []
            while True:
                size = int(self._line().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self._line():  # trailers, up to the empty line
                        pass
                    break
                if size > _MAX_BODY:
                    raise http.client.IncompleteRead(b"")
                chunks.append(self._take(size))
                self._take(2)
            body = b"".join(chunks)
        elif b"content-length" in headers:
            try:
                length = int(headers[b"content-length"])
            except ValueError:
                raise http.client.HTTPException("bad Content-Length") from None
            if not 0 <= length <= _MAX_BODY:
                raise http.client.HTTPException("bad Content-Length")
            body = self._take(length)
        else:  # the body runs to the end of the connection
            try:
                while len(self._buffer) <= _MAX_BODY:
                    self._more()
            except http.client.RemoteDisconnected:
                pass
            body, close = self._buffer, True
            self._buffer = b""
        if close or self._buffer:  # bytes past the answer: the next request could not trust what it reads
            self.close()
        return status, body

    def close(self) -> None:
        sock, self.sock, self._buffer = self.sock, None, b""
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


# ---------------------------------------------------------------------- classification


def classify(method: str, status: int, body: bytes) -> Any:
    """The ``result`` of a successful Bot API answer, or the DeliveryError it means."""
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        if 200 <= status < 300:
            # Something answered 2xx but not the Bot API's envelope: it may have been sent.
            raise DeliveryError.uncertain(f"{method}: HTTP {status} with an unreadable body")
        if status == 429:
            raise DeliveryError.rate_limited(f"{method}: HTTP 429", 1.0)
        if status >= 500 or status in (408, 409, 425):
            raise DeliveryError.transient(f"{method}: HTTP {status} from the Bot API (no JSON body)")
        raise DeliveryError.permanent(f"{method}: HTTP {status} from the Bot API (no JSON body)")
    if payload.get("ok") is True:
        return payload.get("result")

    code = payload.get("error_code") if isinstance(payload.get("error_code"), int) else status
    description = str(payload.get("description") or f"HTTP {status}")[:300]
    parameters = payload.get("parameters") if isinstance(payload.get("parameters"), dict) else {}
    reason = f"{method}: {code} {description}"

    if code == 429 or status == 429:
        retry_after = parameters.get("retry_after")
        if not isinstance(retry_after, int | float):
            found = _RETRY_AFTER_IN_TEXT.search(description)
            retry_after = int(found.group(1)) if found else 1
        raise DeliveryError.rate_limited(reason, float(max(retry_after, 1)))
    if status >= 500 or code >= 500:
        raise DeliveryError.transient(reason)
    if code == 401 or status == 401:
        raise DeliveryError.permanent(f"{reason}: the bot token was rejected; check VESTNIK_TELEGRAM_TOKEN")
    if code == 404 or status == 404:
        raise DeliveryError.permanent(f"{reason}: check VESTNIK_TELEGRAM_TOKEN and VESTNIK_TELEGRAM_API_BASE")
    if "migrate_to_chat_id" in parameters:
        raise DeliveryError.permanent(
            f"{reason}: the group became a supergroup; its new chat id is {parameters['migrate_to_chat_id']}",
            address_unreachable=True,
        )
    if code == 409 or status == 409:  # e.g. getUpdates while a webhook is set: a setup conflict
        raise DeliveryError.permanent(reason)
    lowered = description.lower()
    unreachable = any(marker in lowered for marker in UNREACHABLE_DESCRIPTIONS)
    raise DeliveryError.permanent(reason, address_unreachable=unreachable)


def _closed_by_peer(sock: socket.socket) -> bool:
    """A kept connection the server has closed (or that has unread bytes) is not reused."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _after_partial_delivery(exc: DeliveryError, delivered: list[str]) -> DeliveryError:
    """A failure after some parts went out: a blind retry would repeat them."""
    note = f" (after {len(delivered)} part(s) were delivered, first message id {delivered[0]})"
    if exc.outcome is Outcome.permanent:
        return DeliveryError.permanent(exc.reason + note, address_unreachable=exc.address_unreachable)
    return DeliveryError.uncertain(f"partly delivered: {exc.reason}{note}")


def _message_id(result: Any) -> str:
    if isinstance(result, dict) and "message_id" in result:
        return str(result["message_id"])
    raise DeliveryError.uncertain("the Bot API answered ok without a message_id")


def _kind_of(exc: BaseException) -> str:
    """A short, URL-free description of a connection failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    names = []
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        names.append(type(current).__name__)
        current = current.__cause__ or current.__context__
        if current is None and exc.args and isinstance(exc.args[0], BaseException):
            current = exc.args[0]
    interesting = [n for n in names if n not in ("ConnectionError", "MaxRetryError")]
    return interesting[-1] if interesting else names[0]


def _reply_markup(rows: tuple[tuple[Button, ...], ...]) -> dict[str, Any] | None:
    if not rows:
        return None
    keyboard = []
    for row in rows:
        buttons = []
        for button in row:
            if button.url:
                buttons.append({"text": button.text, "url": button.url})
            elif button.callback_data:
                if len(button.callback_data.encode()) > TelegramChannel.callback_data_maxlen:
                    raise DeliveryError.permanent(
                        f"button {button.text!r}: callback_data is longer than 64 bytes")
                buttons.append({"text": button.text, "callback_data": button.callback_data})
            else:
                raise DeliveryError.permanent(f"button {button.text!r} has neither a url nor callback_data")
        if buttons:
            keyboard.append(buttons)
    return {"inline_keyboard": keyboard} if keyboard else None


# ---------------------------------------------------------------------- splitting long texts

_TAG = re.compile(r"<(/?)([a-zA-Z][\w-]*)[^>]*>")


def tg_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units); markup counts too, which errs on the safe side."""
    return len(text.encode("utf-16-le")) // 2


def split_html(text: str, limit: int) -> list[str]:
    """Split Telegram HTML into parts of at most ``limit`` (UTF-16) characters.

    Cuts at a paragraph break, else a line break, else a space, else anywhere
    that is not inside a tag or an entity.  Tags open at a cut are closed at
    the end of the part and reopened (with their attributes) at the start of
    the next, so every part is well-formed when the input is.  Parts that
    would be blank are dropped (Telegram refuses empty messages).
    """
    if tg_len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    while tg_len(rest) > limit:
        reopened = len(_leading_tags(rest))
        budget = limit
        while True:
            cut = _cut_point(rest, budget, reopened)
            if cut is None:  # pathological: reopened tags alone fill a part; give up on balancing
                cut, stack = _hard_cut_plain(rest, limit), []
                break
            stack = _open_tags(rest[:cut])
            size = tg_len(rest[:cut].rstrip()) + sum(len(name) + 3 for name, _ in stack)
            if size <= limit:
                break
            budget -= max(size - limit, 1)
        chunk = rest[:cut].rstrip() + "".join(f"</{name}>" for name, _ in reversed(stack))
        parts.append(chunk)
        rest = "".join(tag for _, tag in stack) + rest[cut:].lstrip("\n")
    parts.append(rest)
    return [part for part in parts if _visible(part)]


def _cut_point(text: str, budget: int, lowest: int) -> int | None:
    """Where to cut so that the first part holds about ``budget`` characters."""
    window = _prefix_within(text, budget)
    if window <= lowest:
        return None
    head = text[:window]
    for separator in ("\n\n", "\n", " "):
        at = head.rfind(separator)
        if at > max(lowest, window // 2):
            cut = _outside_markup(head, at + len(separator), lowest)
            if cut > lowest:
                return cut
    return _outside_markup(head, window, lowest)


def _outside_markup(head: str, cut: int, lowest: int) -> int:
    """Move ``cut`` back so it is not inside a tag (``<a href="...">``) or an entity (``&amp;``)."""
    opening, closing = head.rfind("<", 0, cut), head.rfind(">", 0, cut)
    if opening > closing and opening > lowest:
        cut = opening
    amp = head.rfind("&", 0, cut)
    if amp != -1 and cut - amp <= 10 and ";" not in head[amp:cut] and amp > lowest:
        cut = amp
    return cut


def _prefix_within(text: str, budget: int) -> int:
    """The longest prefix length (in code points) whose UTF-16 length is within budget."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > budget:
            return index
    return len(text)


def _hard_cut_plain(text: str, limit: int) -> int:
    return max(_prefix_within(text, limit), 1)


def _open_tags(html: str) -> list[tuple[str, str]]:
    """Tags opened and not closed in ``html``, outermost first: (name, full opening tag)."""
    stack: list[tuple[str, str]] = []
    for match in _TAG.finditer(html):
        closing, name = match.group(1), match.group(2).lower()
        if closing:
            for i in range(len(stack) - 1, -1, -1):
                if stack[i][0] == name:
                    del stack[i:]
                    break
        elif not match.group(0).endswith("/>"):
            stack.append((name, match.group(0)))
    return stack


def _leading_tags(text: str) -> str:
    end = 0
    while (match := _TAG.match(text, end)) is not None and not match.group(1):
        end = match.end()
    return text[:end]


def _visible(part: str) -> bool:
    return bool(_TAG.sub("", part).strip())
