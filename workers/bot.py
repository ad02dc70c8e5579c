"""Telegram bot updates: what a client's button press or command means.

The same function serves the webhook (``POST /webhooks/telegram``) and long
polling (``vestnik bot``, ``workers/poller.py``), so both behave alike.  It
only writes to the session it is given (emitting events through the outbox,
changing the client's Telegram fields, auditing as ``client:<id>``); the
reply to Telegram (``answerCallbackQuery``, ``sendMessage``) is returned for
the caller to send after the commit, never inside the transaction.

What it understands:

- ``callback_query`` ``rate:<booking>:<1-5>``: a feedback answer;
- ``/start <token>`` in a private chat: binds the chat to the client whose
  one-time connect token it is (``vestnik.shared.client_auth``), switches Telegram
  on and clears "unreachable".  A chat belongs to one client: binding it
  takes it from whoever had it;
- ``/start`` alone from a known chat: the client is back (reachable, on);
- ``/stop``: Telegram notifications off for the client of this chat;
- ``my_chat_member`` with new status ``kicked`` (the user blocked the bot):
  the address is marked unreachable, so rules stop planning Telegram for it;
  ``member`` again clears that.  In a registered group or channel, ``left`` or
  ``kicked`` (the bot was removed) marks the chat unreachable with the reason
  (``workers/chats.py``); a press on a post's button there is recorded once
  per person.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vestnik.outbox import emit
from vestnik.shared import bounds, client_auth, locales
from vestnik.shared.audit import client_action
from vestnik.shared.bounds import BoundsError
from vestnik.shared.buttons import CALLBACK_PREFIX
from vestnik.shared.config import Settings
from vestnik.shared.models import AuditLog, Client, ClientAddress, ClientTokenPurpose, utcnow
from vestnik.workers import chats
from vestnik.workers.channels.telegram import TelegramChannel, bot_can_post

#: the bot is Telegram's own: the addresses it binds and the switch /stop turns off are that channel's
CHANNEL = TelegramChannel.name

_RATE = re.compile(r"^rate:([\w.:-]{1,40}):([1-5])$")


@dataclass(frozen=True)
class BotReply:
    method: str  # Bot API method, e.g. answerCallbackQuery
    params: dict[str, Any]


def client_for_chat(session: Session, chat_id: Any) -> Client | None:
    owner = select(ClientAddress.client_id).where(ClientAddress.channel == CHANNEL,
                                                  ClientAddress.address == str(chat_id))
    return session.scalars(select(Client).where(Client.id.in_(owner)).order_by(Client.id)).first()


def handle_update(session: Session, update: dict[str, Any], *, settings: Settings | None = None) -> BotReply | None:
    """Apply one Bot API update; return the reply to send after commit, if any.

    ``settings`` is needed for ``/start <token>`` (the secret key checks the
    token, ``public_url`` goes into replies); without it connect tokens are refused.
    """
    check_update(update)
    update_id = update.get("update_id")
    callback = update.get("callback_query")
    if isinstance(callback, dict):
        return _callback(session, update_id, callback)
    member = update.get("my_chat_member")
    if isinstance(member, dict):
        return _membership(session, member)
    message = update.get("message")
    if isinstance(message, dict) and isinstance(message.get("text"), str):
        return _command(session, message, settings)
    return None


#: Telegram's ids (chats, users, updates) fit in 52 bits; anything bigger is not from Telegram
MAX_TELEGRAM_ID = 2**53
_OBJECTS = ("message", "callback_query", "my_chat_member")


def check_update(update: Any) -> None:
    """The parts of an update this module reads have Telegram's shapes; else BoundsError naming the part.

    After the secret token the sender is Telegram, but a leaked token or a bug must not reach the
    database as a 40-digit chat id or a list where an object belongs.
    """
    if not isinstance(update, dict):
        raise BoundsError("update", "must be an object")
    bounds.integer(update.get("update_id"), "update_id", minimum=0, maximum=MAX_TELEGRAM_ID)
    for name in _OBJECTS:
        part = update.get(name)
        if part is None:
            continue
        if not isinstance(part, dict):
            raise BoundsError(name, "must be an object")
        inner = part.get("message") if name == "callback_query" else part
        for path, holder in ((f"{name}.message", inner), (name, part)):
            if holder is None:
                continue
            if not isinstance(holder, dict):
                raise BoundsError(path, "must be an object")
            for key in ("chat", "from", "new_chat_member"):
                value = holder.get(key)
                if value is not None and not isinstance(value, dict):
                    raise BoundsError(f"{path}.{key}", "must be an object")
                if isinstance(value, dict) and value.get("id") is not None:
                    bounds.integer(value["id"], f"{path}.{key}.id", minimum=-MAX_TELEGRAM_ID,
                                   maximum=MAX_TELEGRAM_ID)
        for key in ("text", "data"):
            value = part.get(key)
            if value is not None:
                bounds.text(value, f"{name}.{key}", max_chars=4096, multiline=True, strip=False, controls=True)


_WORDS = {
    "connected": {"ru": "Готово: Telegram подключён, {name}. Уведомления будут приходить сюда. /stop — выключить.",
                  "en": "Done: Telegram is connected, {name}. Notifications will come here. /stop turns them off.",
                  "uz-latn": "Tayyor: Telegram ulandi, {name}. Bildirishnomalar shu yerga keladi. /stop — oʻchirish."},
    "bad_token": {"ru": "Ссылка устарела или уже использована. Откройте личный кабинет и нажмите "
                        "«Подключить Telegram» ещё раз: {url}",
                  "en": "This link has expired or was used. Open your profile and press \"Connect Telegram\" "
                        "again: {url}",
                  "uz-latn": "Havola eskirgan yoki allaqachon ishlatilgan. Shaxsiy kabinetni oching va "
                             "«Telegramni ulash» tugmasini yana bosing: {url}"},
    "welcome_back": {"ru": "С возвращением! Уведомления в Telegram включены. /stop — выключить.",
                     "en": "Welcome back! Telegram notifications are on. /stop turns them off.",
                     "uz-latn": "Xush kelibsiz! Telegramdagi bildirishnomalar yoqildi. /stop — oʻchirish."},
    "unknown": {"ru": "Чтобы получать уведомления здесь, откройте личный кабинет и нажмите «Подключить Telegram»: "
                      "{url}",
                "en": "To get notifications here, open your profile and press \"Connect Telegram\": {url}",
                "uz-latn": "Bildirishnomalarni shu yerda olish uchun shaxsiy kabinetni oching va "
                           "«Telegramni ulash» tugmasini bosing: {url}"},
    "stopped": {"ru": "Уведомления в Telegram выключены. /start — включить снова.",
                "en": "Telegram notifications are off. /start turns them back on.",
                "uz-latn": "Telegramdagi bildirishnomalar oʻchirildi. /start — qayta yoqish."},
    "private_only": {"ru": "Подключить можно только личный чат с ботом.",
                     "en": "Only a private chat with the bot can be connected.",
                     "uz-latn": "Faqat bot bilan shaxsiy chatni ulash mumkin."},
    "thanks": {"ru": "Спасибо!", "en": "Thank you!", "uz-latn": "Rahmat!"},
}


def _say(key: str, lang: str, **values: Any) -> str:
    import html

    return locales.pick(_WORDS[key], lang).format(**{k: html.escape(str(v)) for k, v in values.items()})


def _lang(client: Client | None, user: dict[str, Any]) -> str:
    """The client's locale; for a stranger, their Telegram app's language (Russian for the languages of
    Russian readers, Uzbek for uz, English otherwise)."""
    if client is not None and locales.match(client.locale):
        return locales.match(client.locale) or "ru"
    code = str(user.get("language_code") or "ru").lower()
    if code.startswith(("ru", "uk", "be", "kk")):
        return "ru"
    return locales.match(code) or "en"


def _send(chat_id: Any, text: str) -> BotReply:
    return BotReply("sendMessage", {"chat_id": chat_id, "text": text, "parse_mode": "HTML",
                                    "link_preview_options": {"is_disabled": True}})


def _audit(session: Session, client: Client, action: str, details: dict[str, Any] | None = None) -> None:
    client_action(session, client.id, action, details)


def _command(session: Session, message: dict[str, Any], settings: Settings | None) -> BotReply | None:
    chat = message.get("chat") or {}
    chat_id = chat.get("id")
    if chat_id is None:
        return None
    text = message["text"].strip()
    command, _, argument = text.partition(" ")
    command = command.split("@", 1)[0].lower()  # "/start@vestnik_bot" in groups
    user = message.get("from") or {}
    client = client_for_chat(session, chat_id)
    profile_url = (settings.public_url.rstrip("/") if settings else "") + "/me"
    if command == "/start":
        if chat.get("type") != "private":
            return _send(chat_id, _say("private_only", _lang(client, user)))
        token = argument.strip()
        if token:
            return _connect(session, chat_id, token, user, settings, profile_url)
        if client is None:
            return _send(chat_id, _say("unknown", _lang(None, user), url=profile_url))
        changed = {}
        if client.unreachable_reason(CHANNEL):
            changed["telegram_unreachable_reason"] = [client.unreachable_reason(CHANNEL), None]
            client.set_unreachable(CHANNEL, None)
        if not client.channel_enabled(CHANNEL):
            changed["notifications_telegram_enabled"] = [False, True]
            client.set_channel_enabled(CHANNEL, True)
        if changed:
            _audit(session, client, "client.telegram_restarted", {"changes": changed})
        return _send(chat_id, _say("welcome_back", _lang(client, user)))
    if command == "/stop":
        if client is None:
            return _send(chat_id, _say("unknown", _lang(None, user), url=profile_url))
        if client.channel_enabled(CHANNEL):
            client.set_channel_enabled(CHANNEL, False)
            _audit(session, client, "client.preferences",
                   {"changes": {"notifications_telegram_enabled": [True, False]}, "via": "bot /stop"})
        return _send(chat_id, _say("stopped", _lang(client, user)))
    return None


def _connect(session: Session, chat_id: Any, token: str, user: dict[str, Any], settings: Settings | None,
             profile_url: str) -> BotReply:
    secret_key = settings.secret_key if settings else ""
    nonce = client_auth.connect_nonce(secret_key, token) if secret_key else None
    row = None
    if nonce is not None:
        row = client_auth.consume(session, secret_key, ClientTokenPurpose.telegram_connect, nonce, utcnow())
        if row is None:
            # A redelivered update (webhook retry): the token was used by this very chat; say "done" again.
            used = client_auth.find(session, secret_key, ClientTokenPurpose.telegram_connect, nonce)
            owner = session.get(Client, used.client_id) if used is not None and used.used_at else None
            if owner is not None and owner.address(CHANNEL) == str(chat_id):
                return _send(chat_id, _say("connected", _lang(owner, user), name=owner.name))
    client = session.get(Client, row.client_id) if row is not None else None
    if client is None:
        return _send(chat_id, _say("bad_token", _lang(client_for_chat(session, chat_id), user), url=profile_url))
    chat = str(chat_id)
    taken = select(ClientAddress.client_id).where(ClientAddress.channel == CHANNEL, ClientAddress.address == chat,
                                                  ClientAddress.client_id != client.id)
    for previous in session.scalars(select(Client).where(Client.id.in_(taken))):
        previous.set_address(CHANNEL, None)  # one chat, one client: the newest binding wins
        _audit(session, previous, "client.telegram_disconnected", {"chat_id": chat, "taken_by": client.id})
    old = client.address(CHANNEL)
    client.set_address(CHANNEL, chat)
    client.addresses[CHANNEL].verified_at = utcnow()  # the chat's owner opened the link: proven
    client.set_channel_enabled(CHANNEL, True)
    client.set_unreachable(CHANNEL, None)
    _audit(session, client, "client.telegram_connected", {"chat_id": chat, "previous_chat_id": old})
    return _send(chat_id, _say("connected", _lang(client, user), name=client.name or ""))


def _membership(session: Session, member: dict[str, Any]) -> None:
    chat = member.get("chat") or {}
    if chat.get("id") is not None and chat.get("type") in ("group", "supergroup", "channel"):
        return _chat_membership(session, member)
    if chat.get("type") != "private" or chat.get("id") is None:
        return None
    status = str((member.get("new_chat_member") or {}).get("status") or "")
    client = client_for_chat(session, chat["id"])
    if client is None:
        return None
    if status == "kicked":
        reason = "the user blocked the bot (my_chat_member: kicked)"
        if client.unreachable_reason(CHANNEL) != reason:
            client.set_unreachable(CHANNEL, reason)
            _audit(session, client, "client.telegram_unreachable", {"reason": reason})
    elif status == "member" and client.unreachable_reason(CHANNEL):
        _audit(session, client, "client.telegram_reachable", {"was": client.unreachable_reason(CHANNEL)})
        client.set_unreachable(CHANNEL, None)
    return None


def _chat_membership(session: Session, member: dict[str, Any]) -> None:
    """The bot's standing changed in a group or channel: a registered chat it left or was removed from
    becomes unreachable with the reason (``workers/chats.py``); added back, it is reachable again."""
    new = member.get("new_chat_member") or {}
    kind = str((member.get("chat") or {}).get("type"))
    found = chats.membership(session, CHANNEL, member, bot_can_post(kind, new) if isinstance(new, dict) else None)
    if found is not None:
        session.add(AuditLog(actor="system", action="chat.reachable" if found.unreachable_reason is None
                             else "chat.unreachable", object_type="chat", object_id=str(found.id),
                             details={"status": found.bot_status, "reason": found.unreachable_reason,
                                      "via": "my_chat_member"}))
    return None


def _callback(session: Session, update_id: Any, callback: dict[str, Any]) -> BotReply | None:
    answer = {"callback_query_id": str(callback.get("id", ""))}
    data = str(callback.get("data") or "")
    chat_id = (callback.get("message") or {}).get("chat", {}).get("id") or (callback.get("from") or {}).get("id")
    match = _RATE.match(data)
    client = client_for_chat(session, chat_id) if chat_id is not None else None
    # A press in a registered group or channel (a post's buttons): recorded once per person.
    posted = client is None and chat_id is not None and chats.by_address(session, {(CHANNEL, str(chat_id))})
    if (client is not None or posted) and data:
        from vestnik.shared.models import utcnow
        from vestnik.workers.reactions import record_button

        presser = (callback.get("from") or {}).get("id")
        record_button(session, chat_id, (callback.get("message") or {}).get("message_id"), data, utcnow(),
                      actor=f"telegram:{presser}" if presser is not None else None)
    if (client is not None or posted) and data.startswith(CALLBACK_PREFIX):  # an admin's button (shared/buttons.py)
        return BotReply("answerCallbackQuery", {**answer, "text": "✓"})
    if match is None or client is None:
        return BotReply("answerCallbackQuery", {**answer, "text": "—"})
    booking_id, rating = match.group(1), int(match.group(2))
    emit(
        session,
        "feedback_received",
        recipients=[client.id],
        data={"booking_id": booking_id, "rating": rating},
        key=f"feedback:{booking_id}:{client.id}",
        # One answer per client and booking: a second press changes nothing.
        idempotency_key=f"feedback:{booking_id}:{client.id}",
        initiator=f"client:{client.crm_id}",
    )
    return BotReply("answerCallbackQuery", {**answer, "text": _say("thanks", client.locale or "ru")})
