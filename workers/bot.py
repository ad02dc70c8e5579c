"""Telegram bot updates: what a client's button press or command means.

The same function serves the webhook (``POST /webhooks/telegram``) and long
polling (``vestnik bot``), so both behave alike.  It only writes to the
session it is given (emitting events through the outbox); the reply to
Telegram (``answerCallbackQuery``) is returned for the caller to send after
the commit, never inside the transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from outbox import emit
from shared.models import Client

_RATE = re.compile(r"^rate:([\w.:-]{1,40}):([1-5])$")


@dataclass(frozen=True)
class BotReply:
    method: str  # Bot API method, e.g. answerCallbackQuery
    params: dict[str, Any]


def client_for_chat(session: Session, chat_id: Any) -> Client | None:
    return session.scalars(select(Client).where(Client.telegram_chat_id == str(chat_id))).first()


def handle_update(session: Session, update: dict[str, Any]) -> BotReply | None:
    """Apply one Bot API update; return the reply to send after commit, if any."""
    update_id = update.get("update_id")
    callback = update.get("callback_query")
    if isinstance(callback, dict):
        return _callback(session, update_id, callback)
    return None


def _callback(session: Session, update_id: Any, callback: dict[str, Any]) -> BotReply | None:
    answer = {"callback_query_id": str(callback.get("id", ""))}
    data = str(callback.get("data") or "")
    chat_id = (callback.get("message") or {}).get("chat", {}).get("id") or (callback.get("from") or {}).get("id")
    match = _RATE.match(data)
    client = client_for_chat(session, chat_id) if chat_id is not None else None
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
        initiator=f"client:{client.id}",
    )
    thanks = "Спасибо!" if (client.locale or "ru") == "ru" else "Thank you!"
    return BotReply("answerCallbackQuery", {**answer, "text": thanks})
