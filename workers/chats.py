"""Groups and channels as recipients: the registry an admin keeps, and what a post to one is.

A **post** is a notification like any other, whose recipient is a chat instead of a client:
``recipient_id`` NULL, ``recipient_address`` the chat's id, on the channel the chat belongs to.  It
is born pending (:func:`post` for an admin's post, now or at a time; :func:`event_rows` for an
event a chat subscribed to, e.g. a low-balance alert to the staff group) and goes through the one
delivery path (``workers/delivery.py``): the same claim, limiter (Telegram's 20 a minute per group
and 30 a second for the bot), attempt rows, record and history.  Buttons are the template's own
(``shared/buttons.py``); a press comes back through the bot (``workers/bot.py``) and is recorded once
per person (``workers/reactions.py``).

A chat is **verified** through its channel (``Channel.chat_facts``: for Telegram ``getMe``,
``getChat`` and ``getChatMember``): title, kind and whether the bot may post.  It becomes
**unreachable**, with the reason, when the bot is removed (a ``my_chat_member`` update,
:func:`membership`) or a send finds it gone (a permanent "bot was kicked", "chat not found":
:func:`mark_unreachable`, called by ``workers/notifications.py``); a later verification or the bot's
return clears that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vestnik.shared.composer import find_template
from vestnik.shared.errors import TemplateError
from vestnik.shared.models import Category, Chat, utcnow
from vestnik.workers import notifications
from vestnik.workers.channels.base import Channel, DeliveryError
from vestnik.workers.rules import Rule
from vestnik.workers.template_checks import event_types_using

#: the event type of an admin's post of a template no event uses (a news post of its own)
POST_EVENT = "chat_post"
#: the step of an event's post to a chat: one per chat and event
STEP_PREFIX = "chat:"


class ChatError(ValueError):
    """A chat cannot be registered or posted to; the message says why, for the admin."""


# ------------------------------------------------------------------ the registry


def verify(session: Session, channel: Channel, ref: str, *, actor: str, now: datetime | None = None) -> Chat:
    """Ask the provider about ``ref`` (a chat id or @username) and add or refresh its registry row.
    Raises :class:`ChatError` with the provider's words when the bot cannot see the chat."""
    if not getattr(channel, "supports_chats", False):
        raise ChatError(f"the {channel.name} channel has no groups or channels")
    try:
        facts = channel.chat_facts(ref.strip())  # type: ignore[attr-defined]
    except ValueError as exc:
        raise ChatError(str(exc)) from None
    except DeliveryError as exc:
        raise ChatError(_why(exc.reason)) from None
    now = now or utcnow()
    chat = session.scalar(select(Chat).where(Chat.channel == channel.name, Chat.address == facts.address))
    if chat is None:
        chat = Chat(channel=channel.name, address=facts.address, created_by=actor, created_at=now, subscriptions={})
        session.add(chat)
    chat.title, chat.kind, chat.username = facts.title[:255], facts.kind, facts.username
    chat.bot_status, chat.can_post = facts.bot_status, facts.can_post
    chat.verified_at, chat.updated_at = now, now
    if facts.bot_status in ("left", "kicked"):
        chat.unreachable_reason = f"the bot is not in the {facts.kind} ({facts.bot_status})"
        chat.unreachable_at = now
    else:
        chat.unreachable_reason = chat.unreachable_at = None
    session.flush()
    return chat


def reverify(session: Session, channel: Channel, chat: Chat, *, actor: str) -> str | None:
    """Verify a registered chat again; a chat the provider no longer shows the bot is marked
    unreachable with its reason (returned), otherwise its facts are refreshed (None)."""
    try:
        verify(session, channel, chat.address, actor=actor)
    except ChatError as exc:
        reason = str(exc)
        chat.unreachable_reason, chat.unreachable_at = reason, utcnow()
        chat.can_post, chat.updated_at = False, utcnow()
        if "kicked" in reason:
            chat.bot_status = "kicked"
        elif "not a member" in reason:
            chat.bot_status = "left"
        return reason
    return chat.unreachable_reason


def _why(reason: str) -> str:
    lowered = reason.lower()
    if "chat not found" in lowered:
        return (f"{reason}: the bot cannot see this chat; add the bot to the group or channel first "
                "(a channel needs it as an administrator), or check the id")
    if "kicked" in lowered or "not a member" in lowered:
        return f"{reason}: add the bot to the chat again"
    return reason


def mark_unreachable(session: Session, channel: str, address: str, reason: str) -> int:
    """A send to a registered chat failed for good (the bot was removed, the chat is gone)."""
    now = utcnow()
    return session.execute(
        update(Chat).where(Chat.channel == channel, Chat.address == address.strip())
        .values(unreachable_reason=reason[:500], unreachable_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount


def by_address(session: Session, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], Chat]:
    """Registered chats among (channel, address) pairs (a delivery batch's rows without a client)."""
    if not pairs:
        return {}
    addresses = {a for _, a in pairs}
    rows = session.scalars(select(Chat).where(Chat.address.in_(addresses)))
    return {(c.channel, c.address): c for c in rows if (c.channel, c.address) in pairs}


#: Telegram's my_chat_member statuses that mean the bot is out of the chat
_OUT = {"left": "the bot was removed from the chat", "kicked": "the bot was banned from the chat"}


def membership(session: Session, channel: str, update_: Mapping[str, Any], can_post: bool | None) -> Chat | None:
    """A ``my_chat_member`` update about a group or channel: a registered chat the bot left or was
    removed from becomes unreachable with the reason; back in, it is reachable and its standing fresh."""
    chat_part = update_.get("chat") or {}
    chat = session.scalar(select(Chat).where(Chat.channel == channel, Chat.address == str(chat_part.get("id"))))
    if chat is None:
        return None
    status = str((update_.get("new_chat_member") or {}).get("status") or "")
    now = utcnow()
    chat.bot_status, chat.updated_at = status, now
    if chat_part.get("title"):
        chat.title = str(chat_part["title"])[:255]
    if status in _OUT:
        who = (update_.get("from") or {}).get("first_name")
        chat.unreachable_reason = f"{_OUT[status]} (my_chat_member: {status}" + (f", by {who})" if who else ")")
        chat.unreachable_at = now
        chat.can_post = False
    else:
        chat.unreachable_reason = chat.unreachable_at = None
        if can_post is not None:
            chat.can_post = can_post
    return chat


# ------------------------------------------------------------------ posts


def post(session: Session, chats: Sequence[Chat], template_code: str, data: Mapping[str, Any], *,
         send_at: datetime | None, initiator: str, now: datetime | None = None) -> list[int]:
    """An admin's post of a template to chats, now or at ``send_at``: one pending notification per
    chat (the scheduler hands it to delivery when due).  Returns their ids; ChatError if a chat
    cannot take it."""
    now = now or utcnow()
    if not chats:
        raise ChatError("choose at least one chat")
    for chat in chats:
        if chat.unreachable_reason:
            raise ChatError(f"{chat.title or chat.address} is unreachable: {chat.unreachable_reason}")
        if not chat.can_post:
            raise ChatError(f"the bot may not post in {chat.title or chat.address} ({chat.bot_status}); "
                            "make it an administrator who can post, then verify the chat again")
        try:
            find_template(session, template_code, chat.channel, chat_locale(chat))
        except TemplateError as exc:
            raise ChatError(str(exc)) from None
    due = send_at if send_at is not None and send_at > now else now
    stamp = f"{int(now.timestamp() * 1000)}"
    rows = [dict(recipient_id=None, channel=chat.channel, recipient_address=chat.address,
                 event_type=event_of(template_code),
                 template_code=template_code, payload_json=dict(data), category=Category.service.value,
                 locale=chat_locale(chat), send_at=due, step=f"post-{stamp}-{chat.id}", key=None, event_id=None,
                 initiator=initiator, queued_at=None, attempts=0, delivery_uncertain=False, created_at=now,
                 updated_at=now) for chat in chats]
    return [a.id for a in notifications.add_pending(session, rows)]


def event_of(template_code: str) -> str:
    """The event type a post renders as: the first event whose rules use the template (its fields are
    the template's variables, dates parsed as dates), else :data:`POST_EVENT` (a template of its own)."""
    using = event_types_using(template_code)
    return using[0].name if using else POST_EVENT


def chat_locale(chat: Chat | Subscriber) -> str:
    return chat.locale or "ru"


@dataclass(frozen=True)
class Subscriber:
    """What an event's post needs of a chat that subscribed to the event's type: a plain value, so a
    worker may keep it between batches (``workers/handling.py`` caches it while no chat row changes)."""

    id: int
    channel: str
    address: str
    locale: str | None


Subscribed = dict[str, list[tuple[Subscriber, str]]]

_C = Chat.__table__


def subscriptions(session: Session) -> Subscribed:
    """event type -> [(chat, template code)] for every reachable chat that may post, one Core query."""
    out: Subscribed = {}
    rows = session.execute(select(_C.c.id, _C.c.channel, _C.c.address, _C.c.locale, _C.c.subscriptions)
                           .where(_C.c.unreachable_reason.is_(None), _C.c.can_post.is_(True)).order_by(_C.c.id))
    for chat_id, channel, address, locale, subs in rows:
        chat = Subscriber(chat_id, channel, address, locale)
        for event_type, code in (subs or {}).items():
            if code:
                out.setdefault(event_type, []).append((chat, str(code)))
    return out


def event_rows(event: Any, rule: Rule, chats: Sequence[tuple[Subscriber, str]], now: datetime
               ) -> list[dict[str, Any]]:
    """The posts an event makes in the chats that subscribed to its type: none when its rule is off,
    or when the rule's steps have conditions and none holds (the low-balance notice's "crossed below
    the threshold" decides the staff alert too)."""
    if not chats or not rule.enabled:
        return []
    conditions = [s.condition for s in rule.steps if s.condition is not None]
    if conditions and not any(_holds(c, event.data or {}) for c in conditions):
        return []
    due = event.send_at if event.send_at is not None and event.send_at > now else now
    return [dict(recipient_id=None, channel=chat.channel, recipient_address=chat.address,
                 event_type=event.event_type, template_code=code, payload_json=event.data,
                 category=Category.service.value, locale=chat_locale(chat), send_at=due, expires_at=None,
                 step=f"{STEP_PREFIX}{chat.id}", key=event.key, event_id=event.id, initiator=event.initiator,
                 queued_at=now if due <= now else None, attempts=0, delivery_uncertain=False, created_at=now,
                 updated_at=now) for chat, code in chats]


def _holds(condition: Any, data: Mapping[str, Any]) -> bool:
    try:
        return bool(condition(data))
    except (KeyError, ValueError, ArithmeticError, TypeError):
        return False
