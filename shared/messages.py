"""What a channel sends: a rendered message, its buttons and its attachment.

Plain data on the ground floor: the composer builds these, channels send them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Button:
    """An inline URL or callback button (Telegram); ignored by channels without buttons."""

    text: str
    url: str | None = None
    callback_data: str | None = None


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str = "application/octet-stream"
    #: a file Telegram already holds, sent by its id (``content`` is empty); only Telegram can send it
    telegram_file_id: str | None = None


@dataclass(frozen=True)
class RenderedMessage:
    """What a channel sends: already rendered, already escaped for its format.

    ``text`` is Telegram HTML for Telegram and the plain-text part for email;
    ``html`` is the HTML part of an email (None elsewhere).
    """

    notification_id: int
    text: str
    subject: str | None = None
    html: str | None = None
    buttons: tuple[tuple[Button, ...], ...] = ()
    attachment: Attachment | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: the locale of the template that was rendered (a fallback's when the client's was missing)
    locale: str | None = None
    #: whom and what it is about (the webhook channel sends these; others ignore them)
    event_type: str = ""
    client_id: int | str | None = None  # the CRM's id: an integer, or its string id (a UUID)
