"""A local fake of the Telegram Bot API, for the embedded demo and the tests.

Why it exists: delivery code must be tested against the answers the real Bot
API gives (envelopes, status codes, descriptions), over real sockets, without
Telegram.  It answers like the real one: ``{"ok": true, "result": ...}`` on
success and ``{"ok": false, "error_code": ..., "description": ...,
"parameters": {...}}`` otherwise, including ``429`` with
``parameters.retry_after``, ``403 Forbidden: bot was blocked by the user``,
``400 Bad Request: chat not found``, ``400 can't parse entities`` for HTML
Telegram would refuse, ``401 Unauthorized`` for a wrong token, and 5xx.

Every accepted message lands in a thread-safe ledger; :meth:`FakeBotApi.wait_for`
blocks on a condition variable until a predicate over the ledger holds, so
tests never sleep to synchronise.

Groups and channels are scripted too (:meth:`~FakeBotApi.add_chat`: kind, title, @username, the bot's
standing): ``getChat`` and ``getChatMember`` answer with the Bot API's ``ChatFullInfo`` and
``ChatMember*`` shapes, a chat the bot is not in answers ``400 Bad Request: chat not found`` or
``403 Forbidden: bot was kicked from the supergroup chat`` / ``bot is not a member of the channel
chat``, sends there are refused the same way, and :meth:`~FakeBotApi.set_bot_status` returns (and
queues) the ``my_chat_member`` update Telegram sends when the bot is removed or promoted.

Faults are scripted: per chat (:meth:`~FakeBotApi.block_chat`,
:meth:`~FakeBotApi.unknown_chat`, :meth:`~FakeBotApi.migrate_chat`), as a
queue of next answers for send methods (:meth:`~FakeBotApi.fail_next`, kinds
listed in :data:`FAULT_KINDS`, including ``"stall"``: accept the message,
then answer only after the client's read timeout), and as a deterministic
ratio (:meth:`~FakeBotApi.fail_ratio`: 0.5 fails every second send).

Served by ``ThreadingHTTPServer`` (a thread per connection) with HTTP/1.1 keep-alive and Nagle off
(``disable_nagle_algorithm``): without that, Nagle plus delayed ACKs cap a
connection at about 23 requests a second and a benchmark measures the fake.
Requests are read and answered directly (:class:`_Handler`: no ``email``
header parser, one write per answer, no per-request log) and Telegram HTML
checks are cached per text, so a send costs this fake about 0.08 ms of CPU
instead of 0.2 (``bench.fakes_cpu``): benchmarks measure Vestnik, not the fake.

Run alone: ``python -m vestnik.shared.fakes.botapi --port 8081 --token 123:abc``.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import email.utils
import functools
import html
import itertools
import json
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from http.server import ThreadingHTTPServer
from socketserver import StreamRequestHandler
from typing import Any
from urllib.parse import parse_qs

DEFAULT_TOKEN = "123456:TEST-token-for-the-fake"  # noqa: S105 - a fake's fake token
DEFAULT_USERNAME = "vestnik_fake_bot"

#: Telegram HTML: the tags the Bot API accepts (Bots FAQ / formatting options).
ALLOWED_TAGS = frozenset({"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler",
                          "a", "code", "pre", "blockquote", "tg-emoji"})
ALLOWED_ENTITIES = frozenset({"lt", "gt", "amp", "quot"})

#: What :meth:`FakeBotApi.fail_next` and :meth:`FakeBotApi.fail_ratio` accept.
FAULT_KINDS = ("429", "500", "502", "503", "stall", "blocked", "deactivated", "kicked", "chat_not_found",
               "parse", "403", "400")

Ledger = list[dict[str, Any]]


@dataclass(frozen=True)
class Fault:
    kind: str
    retry_after: int = 3
    stall_s: float | None = None


def _error(code: int, description: str, **parameters: Any) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return code, body


_FAULT_ANSWERS: dict[str, tuple[int, dict[str, Any]]] = {
    "500": _error(500, "Internal Server Error"),
    "503": _error(503, "Service Unavailable"),
    "blocked": _error(403, "Forbidden: bot was blocked by the user"),
    "403": _error(403, "Forbidden: bot was blocked by the user"),
    "deactivated": _error(403, "Forbidden: user is deactivated"),
    "kicked": _error(403, "Forbidden: bot was kicked from the group chat"),
    "chat_not_found": _error(400, "Bad Request: chat not found"),
    "400": _error(400, "Bad Request: chat not found"),
    "parse": _error(400, "Bad Request: can't parse entities: Unsupported start tag \"div\" at byte offset 0"),
}


class FakeBotApi:
    """``with FakeBotApi() as api:`` ... ``api.url`` is a Bot API base, ``api.token`` its token."""

    def __init__(self, token: str = DEFAULT_TOKEN, host: str = "127.0.0.1", port: int = 0, *,
                 stall_s: float = 3.0, username: str = DEFAULT_USERNAME) -> None:
        self.token = token
        self.username = username  # the bot's, as getMe answers it
        self.stall_s = stall_s
        self.cond = threading.Condition()
        self._messages: Ledger = []
        self._calls: list[tuple[str, str]] = []
        self._callback_answers: list[dict[str, Any]] = []
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._blocked: dict[str, str] = {}
        self._migrated: dict[str, int] = {}
        #: file_id -> (name, bytes, type): files this fake "holds" (uploaded through it, or add_file)
        self._files: dict[str, tuple[str, bytes, str]] = {}
        #: groups and channels the bot knows (add_chat): chat id -> {"chat": getChat's result, "member": ...}
        self._chats: dict[str, dict[str, Any]] = {}
        self._faults: deque[Fault] = deque()
        self._ratio: tuple[float, str] | None = None
        self._sends = 0
        self.webhook_url: str | None = None
        self.connections = 0
        #: seconds each send takes before it answers (a slow provider, for in-flight work at shutdown)
        self.latency_s = 0.0
        self._stopping = threading.Event()
        self._server = _Server((host, port), _Handler)
        self._server.fake = self
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> FakeBotApi:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="fake-bot-api", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        with self.cond:
            self.cond.notify_all()  # wake long polls
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> FakeBotApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting

    def block_chat(self, chat_id: str | int,
                   description: str = "Forbidden: bot was blocked by the user") -> None:
        """Every send to this chat answers 403 with ``description``."""
        with self.cond:
            self._blocked[str(chat_id)] = description

    def unknown_chat(self, chat_id: str | int) -> None:
        """Every send to this chat answers ``400 Bad Request: chat not found``."""
        with self.cond:
            self._blocked[str(chat_id)] = "Bad Request: chat not found"

    def migrate_chat(self, chat_id: str | int, new_chat_id: int) -> None:
        """The group became a supergroup: sends answer 400 with ``parameters.migrate_to_chat_id``."""
        with self.cond:
            self._migrated[str(chat_id)] = new_chat_id

    def fail_next(self, n: int = 1, kind: str = "500", *, retry_after: int = 3,
                  stall_s: float | None = None) -> None:
        """The next ``n`` sends (sendMessage/sendDocument) fail with ``kind`` (see FAULT_KINDS)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {FAULT_KINDS}")
        with self.cond:
            self._faults.extend(Fault(kind, retry_after, stall_s) for _ in range(n))

    def fail_ratio(self, ratio: float, kind: str = "500") -> None:
        """Deterministically fail this share of sends (0.5: the 2nd, 4th, ...); 0 turns it off."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {FAULT_KINDS}")
        if not 0 <= ratio <= 1:
            raise ValueError("ratio must be between 0 and 1")
        with self.cond:
            self._ratio = (ratio, kind) if ratio else None
            self._sends = 0

    def fail_every(self, n: int, kind: str = "500") -> None:
        """Every n-th send fails (``fail_ratio(1 / n)``)."""
        self.fail_ratio(1 / n, kind)

    def clear_faults(self) -> None:
        with self.cond:
            self._faults.clear()
            self._ratio = None
            self._blocked.clear()
            self._migrated.clear()

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue a raw update for getUpdates (``update_id`` assigned when missing)."""
        with self.cond:
            update = dict(update)
            update.setdefault("update_id", next(self._update_ids))
            self._updates.append(update)
            self.cond.notify_all()
        return update

    def push_message(self, chat_id: int | str, text: str, *, first_name: str = "Client",
                     language_code: str | None = None) -> dict[str, Any]:
        """Queue a real-shaped ``message`` update (a client wrote to the bot).

        A leading ``/command`` gets its ``bot_command`` entity, as Telegram sends it.
        """
        chat = int(chat_id)
        user: dict[str, Any] = {"id": chat, "is_bot": False, "first_name": first_name}
        if language_code:
            user["language_code"] = language_code
        message: dict[str, Any] = {
            "message_id": next(self._message_ids), "date": int(time.time()), "text": text, "from": user,
            "chat": {"id": chat, "type": "private", "first_name": first_name},
        }
        command = re.match(r"/\w+(@\w+)?", text)
        if command:
            length = len(command.group(0).encode("utf-16-le")) // 2
            message["entities"] = [{"offset": 0, "length": length, "type": "bot_command"}]
        return self.push_update({"message": message})

    def push_start(self, chat_id: int | str, payload: str = "", **kwargs: Any) -> dict[str, Any]:
        """The user pressed Start (from a ``t.me/<bot>?start=<payload>`` deep link when ``payload`` is given)."""
        return self.push_message(chat_id, f"/start {payload}".strip(), **kwargs)

    def push_my_chat_member(self, chat_id: int | str, new_status: str, *, old_status: str | None = None,
                            first_name: str = "Client") -> dict[str, Any]:
        """Queue a real-shaped ``my_chat_member`` update: ``kicked`` when the user blocks the bot,
        ``member`` when they unblock it."""
        chat = int(chat_id)
        user = {"id": chat, "is_bot": False, "first_name": first_name}
        bot = {"id": int(self.token.split(":")[0]) if self.token.split(":")[0].isdigit() else 1, "is_bot": True,
               "first_name": "Vestnik", "username": self.username}
        old = old_status or ("member" if new_status == "kicked" else "kicked")

        def member(status: str) -> dict[str, Any]:
            found: dict[str, Any] = {"user": bot, "status": status}
            if status == "kicked":
                found["until_date"] = 0
            return found

        return self.push_update({"my_chat_member": {
            "chat": {"id": chat, "type": "private", "first_name": first_name}, "from": user,
            "date": int(time.time()), "old_chat_member": member(old), "new_chat_member": member(new_status),
        }})

    # ------------------------------------------------------------------ groups and channels

    @property
    def bot_user(self) -> dict[str, Any]:
        """The bot as a ``User`` (getMe's id, name and username)."""
        head = self.token.split(":")[0]
        return {"id": int(head) if head.isdigit() else 1, "is_bot": True, "first_name": "Vestnik",
                "username": self.username}

    def add_chat(self, chat_id: int, kind: str = "supergroup", title: str = "Group", *,
                 username: str | None = None, bot_status: str = "administrator", can_post_messages: bool = True,
                 can_send_messages: bool = True) -> dict[str, Any]:
        """A group (``group``/``supergroup``) or ``channel`` with the bot in it as ``bot_status``
        (``administrator``, ``member``, ``restricted``, ``left``, ``kicked``).  getChat and getChatMember
        answer from it as Telegram does; sends to it honour the bot's standing.  Returns getChat's result."""
        if kind not in ("group", "supergroup", "channel"):
            raise ValueError("kind is group, supergroup or channel")
        chat: dict[str, Any] = {"id": int(chat_id), "type": kind, "title": title, "accent_color_id": 0,
                                "max_reaction_count": 11, "accepted_gift_types": {
                                    "unlimited_gifts": False, "limited_gifts": False, "unique_gifts": False,
                                    "premium_subscription": False}}
        if username:
            chat["username"] = username
        if kind != "channel":
            chat["permissions"] = {"can_send_messages": can_send_messages, "can_send_audios": True,
                                   "can_send_documents": True, "can_send_photos": True, "can_send_videos": True,
                                   "can_send_video_notes": True, "can_send_voice_notes": True,
                                   "can_send_polls": True, "can_send_other_messages": True,
                                   "can_add_web_page_previews": True, "can_change_info": False,
                                   "can_invite_users": True, "can_pin_messages": False, "can_manage_topics": False}
        with self.cond:
            self._chats[str(chat_id)] = {"chat": chat, "status": bot_status,
                                         "can_post_messages": can_post_messages}
            if username:
                self._chats["@" + username.lower()] = self._chats[str(chat_id)]
        return dict(chat)

    def set_bot_status(self, chat_id: int, status: str, *, can_post_messages: bool = True) -> dict[str, Any]:
        """The bot's standing in a known chat changes (an admin removed, banned or promoted it); returns
        the ``my_chat_member`` update Telegram sends about it (also queued for getUpdates)."""
        with self.cond:
            entry = self._chats[str(chat_id)]
            old = self._member(entry)
            entry["status"], entry["can_post_messages"] = status, can_post_messages
            new = self._member(entry)
        return self.push_update({"my_chat_member": {
            "chat": {k: v for k, v in entry["chat"].items() if k in ("id", "type", "title", "username")},
            "from": {"id": 777, "is_bot": False, "first_name": "Chat admin"},
            "date": int(time.time()), "old_chat_member": old, "new_chat_member": new}})

    def _member(self, entry: dict[str, Any]) -> dict[str, Any]:
        """getChatMember's answer for the bot in a known chat (ChatMember* shapes of the Bot API)."""
        status, kind = entry["status"], entry["chat"]["type"]
        member: dict[str, Any] = {"user": self.bot_user, "status": status}
        if status == "administrator":
            member.update({"can_be_edited": False, "is_anonymous": False, "can_manage_chat": True,
                           "can_delete_messages": True, "can_manage_video_chats": True, "can_restrict_members": True,
                           "can_promote_members": False, "can_change_info": True, "can_invite_users": True,
                           "can_post_stories": False, "can_edit_stories": False, "can_delete_stories": False})
            if kind == "channel":
                member.update({"can_post_messages": entry["can_post_messages"], "can_edit_messages": True})
            else:
                member.update({"can_pin_messages": True, "can_manage_topics": False})
        elif status == "restricted":
            member.update({"is_member": True, "can_send_messages": entry["can_post_messages"], "until_date": 0})
        elif status == "kicked":
            member["until_date"] = 0
        return member

    def _chat_refusal(self, chat: str) -> tuple[int, dict[str, Any]] | None:
        """What Telegram answers a bot that is not (or no longer) in a known chat; None when it is."""
        entry = self._known(chat)
        if entry is None:
            return None
        kind = entry["chat"]["type"]
        if entry["status"] == "kicked":
            return _error(403, f"Forbidden: bot was kicked from the {kind} chat")
        if entry["status"] == "left":
            return _error(403, f"Forbidden: bot is not a member of the {kind} chat")
        return None

    def pending_updates(self) -> int:
        """Updates not yet confirmed by a getUpdates offset."""
        with self.cond:
            return len(self._updates)

    def push_callback(self, chat_id: int | str, data: str, *, message_id: int | None = None,
                      first_name: str = "Client", from_id: int | None = None) -> dict[str, Any]:
        """Queue a real-shaped ``callback_query`` update (someone pressed an inline button).  In a
        private chat the presser is the chat; in a group or channel (negative id) ``from_id`` says who."""
        chat = int(chat_id)
        user = {"id": from_id if from_id is not None else chat, "is_bot": False, "first_name": first_name}
        shape = {"type": "private", "first_name": first_name} if chat > 0 else {"type": "supergroup",
                                                                                 "title": "Group"}
        return self.push_update({"callback_query": {
            "id": str(abs(hash((chat, user["id"], data, time.time())))), "from": user,
            "chat_instance": str(chat), "data": data,
            "message": {"message_id": message_id or 1, "date": int(time.time()),
                        "chat": {"id": chat, **shape}, "text": ""},
        }})

    def add_file(self, file_id: str, name: str, content: bytes, mime_type: str = "application/pdf") -> None:
        """A file Telegram holds under ``file_id`` (as if a user or the bot had sent it before)."""
        with self.cond:
            self._files[file_id] = (name, content, mime_type)

    # ------------------------------------------------------------------ reading the ledger

    def messages(self, chat_id: str | int | None = None) -> Ledger:
        """Accepted messages, oldest first (optionally of one chat)."""
        with self.cond:
            return [dict(m) for m in self._messages if chat_id is None or m["chat_id"] == str(chat_id)]

    def count(self) -> int:
        """How many messages were accepted (without copying the ledger: benchmarks poll this)."""
        with self.cond:
            return len(self._messages)

    def calls(self) -> list[tuple[str, str]]:
        """Every authorised call as (method, chat_id), including refused ones."""
        with self.cond:
            return list(self._calls)

    def callback_answers(self) -> list[dict[str, Any]]:
        with self.cond:
            return [dict(a) for a in self._callback_answers]

    def wait_for(self, predicate: Callable[[Ledger], bool], timeout: float = 10.0) -> Ledger:
        """Block until ``predicate(messages)`` holds; return the messages.  TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self._messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fake Bot API: condition not met within {timeout}s "
                                       f"({len(self._messages)} messages)")
                self.cond.wait(left)
            return [dict(m) for m in self._messages]

    def reset(self) -> None:
        """Forget messages, calls, updates and faults (the demo's "clear" button)."""
        with self.cond:
            self._messages.clear()
            self._calls.clear()
            self._callback_answers.clear()
            self._updates.clear()
        self.clear_faults()

    # ------------------------------------------------------------------ the API (called by the handler)

    def _handle(self, token: str, method: str, params: dict[str, Any],
                document: tuple[str, bytes, str] | None) -> tuple[int, Any]:
        if token != self.token:
            return _error(401, "Unauthorized")
        name = method.lower()
        chat = str(params.get("chat_id", ""))
        with self.cond:
            self._calls.append((method, chat))
        if name in ("sendmessage", "senddocument"):
            return self._send(name, chat, params, document)
        if name == "getme":
            bot_id = int(self.token.split(":")[0]) if self.token.split(":")[0].isdigit() else 1
            return 200, {"ok": True, "result": {
                "id": bot_id, "is_bot": True, "first_name": "Vestnik", "username": self.username,
                "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }}
        if name == "getchat":
            return self._get_chat(chat)
        if name == "getchatmember":
            return self._get_chat_member(chat, params.get("user_id"))
        if name == "getupdates":
            return self._get_updates(params)
        if name == "answercallbackquery":
            if not params.get("callback_query_id"):
                return _error(400, "Bad Request: query is too old and response timeout expired or query ID "
                                   "is invalid")
            with self.cond:
                self._callback_answers.append({**params, "time": time.time()})
                self.cond.notify_all()
            return 200, {"ok": True, "result": True}
        if name == "setwebhook":
            url = str(params.get("url") or "")
            with self.cond:
                self.webhook_url = url or None
            return 200, {"ok": True, "result": True,
                         "description": "Webhook was set" if url else "Webhook was deleted"}
        if name == "deletewebhook":
            with self.cond:
                was, self.webhook_url = self.webhook_url, None
            return 200, {"ok": True, "result": True,
                         "description": "Webhook was deleted" if was else "Webhook is already deleted"}
        if name == "getwebhookinfo":
            return 200, {"ok": True, "result": {
                "url": self.webhook_url or "", "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }}
        return _error(404, "Not Found")

    def _known(self, chat: str) -> dict[str, Any] | None:
        with self.cond:
            return self._chats.get(chat.lower() if chat.startswith("@") else chat)

    def _get_chat(self, chat: str) -> tuple[int, Any]:
        if not chat:
            return _error(400, "Bad Request: chat_id is empty")
        entry = self._known(chat)
        if entry is None:
            return _error(400, "Bad Request: chat not found")
        refusal = self._chat_refusal(chat)
        if refusal is not None and not entry["chat"].get("username"):
            return refusal  # a private chat the bot is not in: Telegram shows it nothing
        return 200, {"ok": True, "result": dict(entry["chat"])}

    def _get_chat_member(self, chat: str, user_id: Any) -> tuple[int, Any]:
        if not chat:
            return _error(400, "Bad Request: chat_id is empty")
        entry = self._known(chat)
        if entry is None:
            return _error(400, "Bad Request: chat not found")
        try:
            user = int(user_id)
        except (TypeError, ValueError):
            return _error(400, "Bad Request: invalid user_id specified")
        if user != self.bot_user["id"]:
            return _error(400, "Bad Request: user not found")
        refusal = self._chat_refusal(chat)
        if refusal is not None and not entry["chat"].get("username"):
            return refusal
        with self.cond:
            return 200, {"ok": True, "result": self._member(entry)}

    def _next_fault(self) -> Fault | None:
        with self.cond:
            self._sends += 1
            if self._faults:
                return self._faults.popleft()
            if self._ratio is not None:
                ratio, kind = self._ratio
                if int(self._sends * ratio + 1e-9) > int((self._sends - 1) * ratio + 1e-9):
                    return Fault(kind)
        return None

    def _send(self, name: str, chat: str, params: dict[str, Any],
              document: tuple[str, bytes, str] | None) -> tuple[int, Any]:
        if not chat:
            return _error(400, "Bad Request: chat_id is empty")
        if self.latency_s:
            self._stopping.wait(self.latency_s)
        fault = self._next_fault()
        if fault is not None and fault.kind != "stall":
            if fault.kind == "429":
                return _error(429, f"Too Many Requests: retry after {fault.retry_after}",
                              retry_after=fault.retry_after)
            if fault.kind == "502":
                return 502, "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n" \
                            "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n" \
                            "</body>\r\n</html>\r\n"
            return _FAULT_ANSWERS[fault.kind]
        with self.cond:
            blocked = self._blocked.get(chat)
            migrated = self._migrated.get(chat)
        if blocked is not None:
            return _error(403 if blocked.startswith("Forbidden") else 400, blocked)
        if migrated is not None:
            return _error(400, "Bad Request: group chat was upgraded to a supergroup chat",
                          migrate_to_chat_id=migrated)
        refusal = self._chat_refusal(chat)
        if refusal is not None:
            return refusal
        known = self._known(chat)
        if known is not None and known["status"] == "restricted" and not known["can_post_messages"]:
            return _error(400, "Bad Request: not enough rights to send text messages to the chat")
        if known is not None and known["chat"]["type"] == "channel" and not (
                known["status"] == "creator" or (known["status"] == "administrator" and known["can_post_messages"])):
            return _error(400, "Bad Request: need administrator rights in the channel chat")
        if not re.fullmatch(r"-?\d+|@\w{4,}", chat):
            return _error(400, "Bad Request: chat not found")

        is_document = name == "senddocument"
        text = str(params.get("caption" if is_document else "text") or "")
        file_id = params.get("document") if is_document and document is None else None
        if isinstance(file_id, str) and file_id:  # sent by a file_id: Telegram must hold that file
            with self.cond:
                document = self._files.get(file_id)
            if document is None:
                return _error(400, "Bad Request: wrong file identifier/HTTP URL specified")
        if is_document and document is None:
            return _error(400, "Bad Request: there is no document in the request")
        markup = _json_field(params.get("reply_markup"))
        problem = _check_markup(markup)
        if problem:
            return _error(400, f"Bad Request: {problem}")
        shown = text
        if str(params.get("parse_mode") or "").lower() == "html":
            parsed = _parse_telegram_html(text)
            if isinstance(parsed, _HtmlProblem):
                return _error(400, f"Bad Request: can't parse entities: {parsed.message}")
            shown = parsed
        length = len(shown.encode("utf-16-le")) // 2
        if is_document and length > 1024:
            return _error(400, "Bad Request: message caption is too long")
        if not is_document and length > 4096:
            return _error(400, "Bad Request: message is too long")
        if not is_document and not shown.strip():
            return _error(400, "Bad Request: message text is empty")

        record = self._accept(name, chat, text, params, markup, document)
        if fault is not None:  # stall: accepted, but the answer comes after the client gave up
            self._stopping.wait(fault.stall_s if fault.stall_s is not None else self.stall_s)
        result: dict[str, Any] = {
            "message_id": record["message_id"], "date": int(record["time"]),
            "from": {"id": 1, "is_bot": True, "first_name": "Vestnik", "username": self.username},
            "chat": {"id": int(chat) if chat.lstrip("-").isdigit() else chat, "type": "private"},
        }
        if known is not None:
            result["chat"] = {k: v for k, v in known["chat"].items() if k in ("id", "type", "title", "username")}
            if known["chat"]["type"] == "channel":
                result["sender_chat"] = dict(result["chat"])
                del result["from"]
        if is_document and document is not None:
            file_id = file_id or f"DOC{record['message_id']}"
            with self.cond:
                self._files[file_id] = document
            result["document"] = {"file_name": document[0], "mime_type": document[2], "file_id": file_id,
                                  "file_unique_id": "U" + file_id, "file_size": len(document[1])}
            if text:
                result["caption"] = shown
        else:
            result["text"] = shown
        if markup:
            result["reply_markup"] = markup
        return 200, {"ok": True, "result": result}

    def _accept(self, name: str, chat: str, text: str, params: dict[str, Any], markup: Any,
                document: tuple[str, bytes, str] | None) -> dict[str, Any]:
        with self.cond:
            record = {
                "method": "sendDocument" if name == "senddocument" else "sendMessage",
                "chat_id": chat,
                "message_id": next(self._message_ids),
                "text": text,
                "parse_mode": params.get("parse_mode"),
                "reply_markup": markup,
                "link_preview_options": _json_field(params.get("link_preview_options")),
                "document": {"name": document[0], "mime_type": document[2], "size": len(document[1]),
                             "content": document[1], "by_file_id": params.get("document")
                             if isinstance(params.get("document"), str) else None} if document else None,
                "time": time.time(),
            }
            self._messages.append(record)
            self.cond.notify_all()
        return record

    def _get_updates(self, params: dict[str, Any]) -> tuple[int, Any]:
        if self.webhook_url:
            return _error(409, "Conflict: can't use getUpdates method while webhook is active; "
                               "use deleteWebhook to delete the webhook first")
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), 50.0)
        with self.cond:
            if offset:
                # Like Telegram: an offset confirms (and forgets) every earlier update.
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return 200, {"ok": True, "result": [dict(u) for u in self._updates[:limit]]}


# ---------------------------------------------------------------------- HTTP


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeBotApi

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        with self.fake.cond:
            self.fake.connections += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End kept-alive connections, so handler threads do not outlive the fake."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (read timeout) makes the late answer fail: expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented",
            502: "Bad Gateway", 503: "Service Unavailable"}
_SERVER = "Server: fake-bot-api\r\n"
_CLOSE = "Connection: close\r\n"


class _Handler(StreamRequestHandler):
    """HTTP/1.1 with keep-alive, read and written directly: the request line, headers into a dict of
    lower-case names, a ``Content-Length`` (or chunked) body, and each answer in one write.
    ``BaseHTTPRequestHandler`` parses headers with the ``email`` package and writes the head and body
    apart: about half of this fake's CPU per message, which a benchmark then counts as Vestnik's."""

    disable_nagle_algorithm = True
    server: _Server

    def handle(self) -> None:
        while True:
            try:
                if not self._one_request():
                    return
            except (ConnectionError, TimeoutError):
                return

    def _one_request(self) -> bool:
        line = self.rfile.readline(65537)
        if not line:
            return False
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            self._reply(*_error(400, "Bad Request: malformed request line"), close=True)
            return False
        method, target, version = parts[0].decode("latin-1"), parts[1].decode("latin-1"), parts[2]
        headers: dict[str, str] = {}
        while True:
            raw = self.rfile.readline(65537)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, colon, value = raw.decode("latin-1").partition(":")
            if not colon:
                self._reply(*_error(400, "Bad Request: malformed header"), close=True)
                return False
            headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep = connection != "close" if version == b"HTTP/1.1" else connection == "keep-alive"
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked()
        else:
            length = int(headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
        path, _, query = target.partition("?")
        if method == "GET":
            self._serve(path, {k: v[0] for k, v in parse_qs(query).items()}, None, keep)
        elif method == "POST":
            self._post(path, headers.get("content-type", ""), body, keep)
        else:
            self._reply(*_error(501, f"Unsupported method ({method!r})"), close=True)
            return False
        return keep

    def _chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline(65537).split(b";")[0].strip() or b"0", 16)
            if not size:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(65537)

    def _post(self, path: str, content_type: str, raw: bytes, keep: bool) -> None:
        try:
            if content_type.startswith("application/json"):
                params = json.loads(raw or b"{}")
                if not isinstance(params, dict):
                    raise ValueError("not an object")
                document = None
            elif content_type.startswith("multipart/form-data"):
                params, document = _parse_multipart(content_type, raw)
            else:
                params = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                document = None
        except (ValueError, UnicodeDecodeError):
            self._reply(*_error(400, "Bad Request: can't parse request body"), close=not keep)
            return
        self._serve(path, params, document, keep)

    def _serve(self, path: str, params: dict[str, Any], document: tuple[str, bytes, str] | None,
               keep: bool) -> None:
        match = _PATH.fullmatch(path)
        if match is None:
            self._reply(*_error(404, "Not Found"), close=not keep)
            return
        status, body = self.server.fake._handle(match.group(1), match.group(2), params, document)
        self._reply(status, body, close=not keep)

    def _reply(self, status: int, body: Any, *, close: bool = False) -> None:
        if isinstance(body, str):
            raw, content_type = body.encode(), "text/html"
        else:
            raw, content_type = json.dumps(body, ensure_ascii=False).encode(), "application/json"
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n{_SERVER}Date: {_http_date()}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(raw)}\r\n"
                f"{_CLOSE if close else ''}\r\n")
        self.wfile.write(head.encode("latin-1") + raw)


_PATH = re.compile(r"/bot([^/]*)/(\w+)")
_date: list[Any] = [0, ""]


def _http_date() -> str:
    """The Date header, formatted once a second."""
    now = int(time.time())
    if _date[0] != now:
        _date[:] = [now, email.utils.formatdate(now, usegmt=True)]
    return str(_date[1])


# ---------------------------------------------------------------------- parsing helpers


def _json_field(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _parse_multipart(content_type: str, raw: bytes) -> tuple[dict[str, Any], tuple[str, bytes, str] | None]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    params: dict[str, Any] = {}
    document = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename is not None:
            document = (filename, payload, part.get_content_type())
        elif name:
            params[str(name)] = payload.decode()
    return params, document


def _check_markup(markup: Any) -> str | None:
    if markup is None:
        return None
    if not isinstance(markup, dict) or not isinstance(markup.get("inline_keyboard"), list):
        return "can't parse reply keyboard markup JSON object"
    # As the real Bot API answers: at most 100 buttons on a message, callback data 1-64 bytes, a link
    # with a scheme Telegram opens (http, https, tg), exactly one action per button.
    if sum(len(row) for row in markup["inline_keyboard"] if isinstance(row, list)) > 100:
        return "reply markup is too long"
    for row in markup["inline_keyboard"]:
        if not isinstance(row, list):
            return "field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array of Arrays"
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str) or not button["text"]:
                return "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
            actions = [k for k in ("url", "callback_data") if button.get(k) is not None]
            if len(actions) != 1:
                return "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
            if "callback_data" in actions and not 1 <= len(str(button["callback_data"]).encode()) <= 64:
                return "BUTTON_DATA_INVALID"
            if "url" in actions and not re.match(r"(?i)^(https?|tg)://\S+$", str(button["url"])):
                return "BUTTON_URL_INVALID"
    return None


@dataclass(frozen=True)
class _HtmlProblem:
    message: str


class _TelegramHtml(HTMLParser):
    """Parses Telegram HTML the strict way the Bot API does; collects the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.text: list[str] = []
        self.problem: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            self.problem = self.problem or f"Unsupported start tag \"{tag}\""
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problem = self.problem or f"Unexpected end tag \"{tag}\""
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_entityref(self, name: str) -> None:
        if name not in ALLOWED_ENTITIES:
            self.problem = self.problem or f"Unsupported HTML entity \"&{name};\""
        self.text.append(html.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self.text.append(html.unescape(f"&#{name};"))


@functools.lru_cache(maxsize=4096)
def _parse_telegram_html(text: str) -> str | _HtmlProblem:
    """The visible text, or the problem the Bot API would name (cached: an event's messages share a text)."""
    if "<" not in text and "&" not in text:
        return text
    parser = _TelegramHtml()
    parser.feed(text)
    parser.close()
    if parser.problem:
        return _HtmlProblem(parser.problem)
    if parser.stack:
        return _HtmlProblem(f"Can't find end tag corresponding to start tag \"{parser.stack[-1]}\"")
    return "".join(parser.text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local fake of the Telegram Bot API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    args = parser.parse_args(argv)
    with FakeBotApi(args.token, args.host, args.port) as api:
        print(f"fake Bot API on {api.url} (token {args.token}); Ctrl-C stops it", flush=True)  # noqa: T201
        seen = 0
        try:
            while True:
                messages = api.wait_for(lambda m, after=seen: len(m) > after, timeout=3600)
                for m in messages[seen:]:
                    print(f"{m['chat_id']}: {m['text']!r}", flush=True)  # noqa: T201
                seen = len(messages)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
