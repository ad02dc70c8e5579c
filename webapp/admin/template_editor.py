"""What the template editor needs besides the form: variables, preview, test sends.

- :func:`variables_catalogue` lists, for every template code, the events that
  use it and the variables each offers (from the event schema in
  ``shared/events.py``, with examples), so the editor shows them beside the
  form and inserts them on click.
- :func:`preview` renders the *unsaved* form content through the same
  ``compose`` that delivery uses (what the admin sees is what a client gets),
  with the event's example data and either the example client or a real one,
  and runs the save-time checks so problems show at their field while typing.
- :func:`send_test` sends that rendering to the signed-in admin's own address
  through the workers' delivery path and records it as a notification
  (initiator ``admin:<id>``, no client), with its delivery attempt.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from vestnik.shared import bounds, client_ids, client_sync
from vestnik.shared.buttons import ButtonError
from vestnik.shared.buttons import parse as parse_buttons
from vestnik.shared.composer import compose
from vestnik.shared.errors import TemplateError
from vestnik.shared.events import CLIENT_VARIABLES, EventType, Field, all_event_types, get_event_type
from vestnik.shared.models import AdminUser, Client, NotificationTemplate
from vestnik.shared.wire import CLIENT_ID
from vestnik.workers.channels import CHANNELS
from vestnik.workers.channels.base import RenderedMessage
from vestnik.workers.delivery import Delivery, Result
from vestnik.workers.template_checks import TELEGRAM_MAX_CHARS, check_template, event_types_using, example_client

#: how long an admin's test waits for a slot of the channel's limit
TEST_MAX_WAIT_S = 10.0

#: Filters every template may use, shown under the variables.
FILTER_HINTS = (
    ("{{ starts_at|date('d MMMM yyyy') }}", "a time in another format (Babel pattern)"),
    ("{{ amount|money(currency) }}", "money in the client's language"),
    ("{% if reason %}…{% endif %}", "only when an optional field is given"),
)

#: Telegram's HTML parse mode, shown beside its plain editor.
TELEGRAM_HINTS = ("<b>bold</b>", "<i>italic</i>", "<u>underline</u>", "<s>strike</s>", '<a href="…">link</a>',
                  "<code>code</code>", "<pre>block</pre>", "<blockquote>quote</blockquote>",
                  '<span class="tg-spoiler">spoiler</span>')


def _field(f: Field) -> dict[str, Any]:
    return {"name": f.name, "type": f.type, "required": f.required, "example": f.example,
            "description": f.description, "choices": list(f.choices)}


def variables_catalogue() -> dict[str, Any]:
    """Codes -> events, events -> fields: the data behind the editor's variable list."""
    from vestnik.workers.rules import DEFAULT_RULES

    codes: dict[str, list[str]] = {}
    for rule in DEFAULT_RULES.values():
        for step in rule.steps:
            if step.template_code:
                codes.setdefault(step.template_code, [])
                if rule.event_type not in codes[step.template_code]:
                    codes[step.template_code].append(rule.event_type)
    return {
        "client": [_field(f) for f in CLIENT_VARIABLES],
        "events": {e.name: {"description": e.description, "fields": [_field(f) for f in e.fields],
                            "open_data": e.open_data} for e in all_event_types()},
        "codes": {code: sorted(events) for code, events in sorted(codes.items())},
        "filters": [list(h) for h in FILTER_HINTS],
        "telegram_tags": list(TELEGRAM_HINTS),
        "telegram_max_chars": TELEGRAM_MAX_CHARS,
    }


def _client_id(value: Any) -> int | str | None:
    """The preview's real client, by the CRM's id; blank: the example client."""
    text = str(value or "").strip()
    if not text:
        return None
    if not client_ids.valid(text):
        raise bounds.BoundsError("client_id", CLIENT_ID.error)
    key = client_ids.client_key(text)
    return key if key is not None else text


@dataclass
class Draft:
    """The editor's unsaved content."""

    code: str
    channel: str
    locale: str
    subject: str
    body: str
    event: str = ""
    client_id: int | str | None = None  # the CRM's id (42 or a UUID: shared/client_ids.py)
    buttons: str = ""  # the "Telegram buttons" field (shared/buttons.py): previewed and sent with a test

    @classmethod
    def from_form(cls, form: Any) -> Draft:
        def text(name: str, limit: int = 200_000) -> str:
            return str(form.get(name) or "")[:limit]

        return cls(code=text("code", 100).strip(), channel=text("channel", 32), locale=text("locale", 10) or "ru",
                   subject=text("subject"), body=text("body"), event=text("event", 100),
                   buttons=text("buttons", 20_000),
                   client_id=_client_id(form.get("client_id")))

    def template(self) -> NotificationTemplate:
        # Transient: never added to a session, so nothing is saved by a preview.
        return NotificationTemplate(code=self.code, channel=self.channel, locale=self.locale,
                                    subject=self.subject, body=self.body, buttons=self.buttons or None)

    def event_type(self) -> EventType | None:
        """The event chosen for the example data: the one asked for if known, else the first using the code."""
        known = {e.name for e in all_event_types()}
        if self.event in known:
            return get_event_type(self.event)
        using = event_types_using(self.code)  # an unknown name falls back to the code's events
        return using[0] if using else None


@dataclass
class Preview:
    problems: dict[str, list[str]] = field(default_factory=dict)
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    length: int | None = None
    limit: int | None = None
    event: str | None = None
    client: str | None = None
    message: RenderedMessage | None = None
    #: the message's inline buttons as rendered, rows of {"text", "url" | "callback"}
    buttons: list[list[dict[str, str | None]]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"problems": self.problems, "subject": self.subject, "html": self.html, "text": self.text,
                "length": self.length, "limit": self.limit, "buttons": self.buttons,
                "event": self.event, "client": self.client}


def preview(db: Session, draft: Draft, *, default_zone: str, client: Client | None = None) -> Preview:
    """Render the draft; problems by field (the save-time checks, then the render itself).
    ``default_zone`` (VESTNIK_DEFAULT_TIMEZONE) is used for a client without a time zone."""
    out = Preview()
    if draft.channel not in CHANNELS:
        out.problems["channel"] = [f"unknown channel {draft.channel!r}"]
        return out
    for name, message in check_template(draft.code, draft.channel, draft.subject, draft.body, draft.locale):
        out.problems.setdefault(name, []).append(message)
    for message in button_problems(draft.channel, draft.buttons):
        out.problems.setdefault("buttons", []).append(message)
    event = draft.event_type()
    if client is None and draft.client_id is not None:
        client = client_sync.find(db, draft.client_id)
        if client is None:
            out.problems.setdefault("client_id", []).append(f"no client #{draft.client_id}")
    client = client or example_client(draft.locale)
    out.event = event.name if event else None
    out.client = f"{client.name} (#{client_ids.shown(client.id, client.crm_id)})"
    try:
        message = compose(draft.template(), form=CHANNELS[draft.channel], event_type=event.name if event else "",
                          client=client,
                          data=event.example_data() if event else {}, default_zone=default_zone)
    except TemplateError as exc:
        field_name = "buttons" if str(exc).startswith("buttons:") else "body"
        if not out.problems.get(field_name):
            out.problems.setdefault(field_name, []).append(str(exc))
        return out
    out.message = message
    out.buttons = [[{"text": b.text, "url": b.url} if b.url else {"text": b.text, "callback": b.callback_data}
                    for b in row] for row in message.buttons]
    out.subject = message.subject
    out.html, out.text = message.html, message.text
    out.limit = CHANNELS[draft.channel].body_maxlen
    if out.limit is not None:  # the editor shows the count against the channel's limit
        out.length = len(message.text)
    return out


def button_problems(channel: str, source: str) -> list[str]:
    """What the "Telegram buttons" field gets wrong for this channel (Telegram's limits, shared/buttons.py):
    the same check the save makes, shown live in the editor."""
    if not (source or "").strip():
        return []
    chosen = CHANNELS.get(channel)
    if chosen is None or not chosen.supports_buttons:
        with_buttons = ", ".join(c.title for c in CHANNELS.values() if c.supports_buttons)
        return [f"buttons are sent with {with_buttons} messages only; leave this empty"]
    try:
        parse_buttons(source)
    except ButtonError as exc:
        return [str(exc)]
    return []


# ------------------------------------------------------------------ test sends


class TestSendRefused(Exception):
    """The test cannot be sent (no address on that channel, or the draft does not render)."""


def admin_address(admin: AdminUser, channel: str) -> str | None:
    """The admin's own address on a channel: the account's field of the channel's record name
    (``email``, ``telegram_chat_id``); None where the account has none (a webhook)."""
    field_name = CHANNELS[channel].address_field if channel in CHANNELS else None
    value = getattr(admin, field_name, None) if field_name else None
    return str(value).strip() or None if value else None


def send_test(db: Session, delivery: Delivery, draft: Draft, admin: AdminUser) -> Result:
    """Send the draft, rendered with example data, to the admin; return what happened.

    Goes through the workers' delivery path (``Delivery.send_now``: the same
    channel, limiter, attempt row and recording as every notification) but not
    through the queue: the admin is waiting for the answer.  The row has no
    client (initiator ``admin:<id>``) and is never retried or re-sent.
    """
    address = admin_address(admin, draft.channel)
    if not address:
        cls = CHANNELS.get(draft.channel)
        what = cls.address_label if cls is not None else f"{draft.channel} address"
        raise TestSendRefused(f"your account has no {what}; set it under My account")
    zone = delivery.settings.default_timezone
    me = Client(id=0, name=admin.email.split("@")[0], locale=draft.locale, timezone=zone)
    me.set_address(draft.channel, address)
    rendered = preview(db, draft, client=me, default_zone=zone)
    if rendered.message is None:
        problems = "; ".join(m for ms in rendered.problems.values() for m in ms)
        raise TestSendRefused(f"the template does not render: {problems}")
    message = rendered.message
    row = {"recipient_id": None, "channel": draft.channel, "recipient_address": address,
           "event_type": rendered.event or "", "template_code": draft.code or "(draft)",
           "payload_json": {"test": True}, "initiator": f"admin:{admin.id}", "locale": draft.locale,
           "step": f"test-{uuid.uuid4().hex[:12]}", "subject": message.subject,
           "body": message.html if message.html is not None else message.text}
    return delivery.send_now(row, message, max_wait_s=TEST_MAX_WAIT_S)
