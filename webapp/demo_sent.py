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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, current_app, render_template
from markupsafe import Markup
from sqlalchemy import select

from vestnik.shared.models import Notification, OutboxEvent
from vestnik.shared.rendering import telegram_html
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


def init_app(app: Flask, *, bot_api: Any, smtp: Any) -> None:
    """Register the page and the two sinks whose captures it shows."""
    app.extensions[_EXTENSION] = (bot_api, smtp)
    app.register_blueprint(bp)


@bp.get("/sent")
def sent() -> str:
    return render_template("democrm/sent.html", **_snapshot())


@bp.get("/sent/live")
def sent_live() -> str:
    """The page's body alone, fetched every 2 s by static/live.js."""
    return render_template("democrm/_sent_live.html", **_snapshot())


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
