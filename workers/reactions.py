"""What a client did with a message: a button pressed, an unsubscribe (``notification_reactions``).

Recorded when it happens, on the message it belongs to, so reports (``workers/reports.py``) count
them per broadcast, template and event type without guessing later:

- a **button** press (a Telegram ``callback_query``) belongs to the message the button was on:
  the sent Telegram notification to that chat whose message id Telegram reports (``external_id``);
  a long message sent in parts keeps its first part's id, so when no id matches, the last message
  sent to that chat before the press is taken;
- an **unsubscribe** (the link or the email's one-click header) carries no message id: it
  belongs to the last marketing message sent to the client before it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vestnik.shared.models import Category, Notification, NotificationReaction, NotificationStatus, ReactionKind
from vestnik.workers.channels.telegram import TelegramChannel  # reactions come from the bot: Telegram's own


def _sent(*conds: Any):
    return (select(Notification.id).where(Notification.status == NotificationStatus.sent.value, *conds)
            .order_by(Notification.sent_at.desc().nulls_last(), Notification.id.desc()).limit(1))


def record_button(session: Session, chat_id: Any, message_id: Any, value: str, now: datetime,
                  actor: str | None = None) -> int | None:
    """A press of a button on a message in ``chat_id``; returns the notification it was counted for.
    ``actor`` (``telegram:<user id>``): a second press of the same button by the same person (in a group,
    many people see one message) is not counted again."""
    chat = str(chat_id)
    on_chat = (Notification.channel == TelegramChannel.name, Notification.recipient_address == chat)
    nid = None
    if message_id is not None:
        nid = session.scalar(_sent(*on_chat, Notification.external_id == str(message_id)))
    if nid is None:
        nid = session.scalar(_sent(*on_chat, Notification.sent_at <= now))
    if nid is not None and actor is not None and session.scalar(select(NotificationReaction.id).where(
            NotificationReaction.notification_id == nid, NotificationReaction.kind == ReactionKind.button.value,
            NotificationReaction.value == value[:100], NotificationReaction.actor == actor).limit(1)) is not None:
        return nid
    if nid is not None:
        session.add(NotificationReaction(notification_id=nid, kind=ReactionKind.button.value,
                                         value=value[:100], actor=actor, created_at=now))
    return nid


def record_unsubscribe(session: Session, client_id: int, now: datetime) -> int | None:
    """An unsubscribe from marketing, counted for the last marketing message the client got."""
    nid = session.scalar(_sent(Notification.recipient_id == client_id,
                               Notification.category == Category.marketing.value, Notification.sent_at <= now))
    if nid is not None:
        session.add(NotificationReaction(notification_id=nid, kind=ReactionKind.unsubscribe.value, created_at=now))
    return nid
