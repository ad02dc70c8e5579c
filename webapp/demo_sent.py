"""'What was sent': the far ends of the demo, side by side with Vestnik's records.

The page shows, live, the messages the local fake Bot API and the local SMTP
server accepted, next to the ``notifications`` rows (status, channel,
attempts, last error) and the ``outbox_events`` rows (status, error), so a
newcomer watches one CRM click become an outbox row, notifications, a
Telegram message and an email within seconds.

Telegram texts are shown through ``vestnik.shared.rendering.telegram_html``: only
the handful of tags Telegram itself accepts survive, every text node is
escaped, and links keep only http(s) targets, so a template cannot inject
markup into this page.  Email texts are shown as plain text.

The demo has no Telegram app, so the profile's "Connect Telegram" deep link
(``t.me/<bot>?start=<token>``) opens :func:`telegram_app` here instead: its
Start button queues the ``/start <token>`` update a real Telegram would send
into the fake Bot API, where the demo's bot loop (the real
``vestnik.workers.poller``) picks it up like any update.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, abort, current_app, flash, redirect, render_template, request, url_for
from markupsafe import Markup
from sqlalchemy import select
from werkzeug.wrappers import Response

from vestnik.shared import client_auth
from vestnik.shared.models import Client, ClientTokenPurpose, Notification, OutboxEvent
from vestnik.shared.rendering import telegram_html
from vestnik.webapp import get_settings
from vestnik.webapp.db import get_session

bp = Blueprint("demosent", __name__)

_EXTENSION = "vestnik_demo_sinks"
LIMIT = 20  # rows per table: the newest first


@dataclass(frozen=True)
class TelegramShown:
    at: datetime | None
    chat_id: str
    html: Markup


@dataclass(frozen=True)
class EmailShown:
    at: datetime | None
    to: str
    subject: str
    text: str


#: where the demo's deep links go (the profile reads it instead of https://t.me)
TELEGRAM_APP_PATH = "/demo/telegram"
#: chat ids of demo clients that never had Telegram: this plus the client id
NEW_CHAT_BASE = 200_000


def init_app(app: Flask, *, bot_api: Any, smtp: Any) -> None:
    """Register the page and the two sinks whose captures it shows."""
    app.extensions[_EXTENSION] = (bot_api, smtp)
    app.config["TELEGRAM_LINK_BASE"] = TELEGRAM_APP_PATH
    app.register_blueprint(bp)


@bp.get("/sent")
def sent() -> str:
    return render_template("democrm/sent.html", **_snapshot())


@bp.get("/sent/live")
def sent_live() -> str:
    """The page's body alone, fetched every 2 s by static/live.js."""
    return render_template("democrm/_sent_live.html", **_snapshot())


@bp.get(f"{TELEGRAM_APP_PATH}/<bot>")
def telegram_app(bot: str) -> str:
    """A stand-in for the Telegram app opening ``t.me/<bot>?start=<token>``: the chat with a Start button."""
    bot_api, _ = current_app.extensions[_EXTENSION]
    if bot != bot_api.username:
        abort(404)
    token = request.args.get("start", "")[:200]
    return render_template("democrm/telegram.html", bot=bot, token=token, chat_id=_chat_for(token))


@bp.post(f"{TELEGRAM_APP_PATH}/<bot>")
def telegram_start(bot: str) -> Response:
    """The user pressed Start: the update Telegram would send, queued in the fake Bot API."""
    bot_api, _ = current_app.extensions[_EXTENSION]
    if bot != bot_api.username:
        abort(404)
    token = request.form.get("start", "")[:200]
    chat_id = _chat_for(token)
    bot_api.push_start(chat_id, token)
    flash(f"Telegram sent /start to @{bot} from chat {chat_id}; the bot's answer appears below, "
          "and the profile page shows Telegram connected.", "success")
    return redirect(url_for("demosent.sent"))


def _chat_for(token: str) -> int:
    """The chat a demo client presses Start from: the one they have, or a new one of their own."""
    settings = get_settings()
    nonce = client_auth.connect_nonce(settings.secret_key, token) if token else None
    row = client_auth.find(get_session(), settings.secret_key, ClientTokenPurpose.telegram_connect,
                           nonce) if nonce else None
    client = get_session().get(Client, row.client_id) if row is not None else None
    if client is None:
        return NEW_CHAT_BASE  # an unknown or broken link: the bot answers so in this chat
    if client.telegram_chat_id and client.telegram_chat_id.isdigit():
        return int(client.telegram_chat_id)
    return NEW_CHAT_BASE + client.id


def _snapshot() -> dict[str, Any]:
    bot_api, smtp = current_app.extensions[_EXTENSION]
    db = get_session()
    return {
        "telegram": telegram_messages(bot_api)[:LIMIT],
        "emails": emails(smtp)[:LIMIT],
        "notifications": db.scalars(select(Notification).order_by(Notification.id.desc()).limit(LIMIT)).all(),
        "events": db.scalars(select(OutboxEvent).order_by(OutboxEvent.id.desc()).limit(LIMIT)).all(),
    }


# ------------------------------------------------------------ sink adapters


def telegram_messages(bot_api: Any) -> list[TelegramShown]:
    """The fake Bot API's accepted messages, newest first."""
    rows = [
        # Safe markup: telegram_html escapes every text node and keeps only Telegram's few tags.
        TelegramShown(at=_local(m.get("time")), chat_id=str(m.get("chat_id", "")),
                      html=Markup(telegram_html(m.get("text", ""))))  # noqa: S704
        for m in bot_api.messages()
    ]
    return rows[::-1]


def _local(epoch_s: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch_s).astimezone() if epoch_s else None


def emails(smtp: Any) -> list[EmailShown]:
    """The SMTP sink's captured messages, newest first, with their plain-text part."""
    rows = [
        EmailShown(at=_local(m.get("time")), to=_recipients(m.get("to")), subject=str(m.get("subject") or ""),
                   text=m.get("text") or "")
        for m in smtp.messages(include_dropped=False)
    ]
    return rows[::-1]


def _recipients(to: str | list[str] | None) -> str:
    return ", ".join(to) if isinstance(to, list) else (to or "")
