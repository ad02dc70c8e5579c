"""From a template, event data and a client to the message a channel sends.

Used by delivery (just before the send) and by the admin's preview, so what an
admin previews is exactly what a client gets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from vestnik.shared.errors import TemplateError, TemplateNotFound
from vestnik.shared.events import get_event_type
from vestnik.shared.messages import Attachment, Button, RenderedMessage
from vestnik.shared.models import Client, NotificationTemplate
from vestnik.shared.rendering import (
    build_context,
    html_to_text,
    refuse_unsafe_links,
    render,
    render_many,
)


class Form(Protocol):
    """What the composer needs to know of a channel (``workers.channels.base.Channel`` declares it)."""

    #: "required", "optional" or "none"
    subject_mode: str
    #: an HTML part plus a plain-text part made from it; otherwise one text, finished by finish_text
    html_part: bool

    def finish_text(self, text: str) -> str: ...


def find_template(
    session: Session, code: str, channel: str, locale: str, default_locale: str = "ru"
) -> NotificationTemplate:
    """The active template for code x channel in the client's locale, else the default locale."""
    rows = session.scalars(
        select(NotificationTemplate).where(
            NotificationTemplate.code == code,
            NotificationTemplate.channel == channel,
            NotificationTemplate.is_active.is_(True),
        )
    ).all()
    by_locale = {t.locale: t for t in rows}
    for candidate in (locale, default_locale, "en", "ru"):
        if candidate in by_locale:
            return by_locale[candidate]
    if rows:
        return rows[0]
    raise TemplateNotFound(f"no active template {code!r} for channel {channel!r}")


def client_variables(client: Client) -> dict[str, Any]:
    return {"name": client.name, "client_id": client.id}


def _declared(event_type: str) -> tuple[set[str], set[str]]:
    """(all declared field names, the datetime ones) of an event type."""
    try:
        spec = get_event_type(event_type)
    except Exception:  # noqa: BLE001 - an unknown type simply declares nothing
        return set(), set()
    return {f.name for f in spec.fields}, {f.name for f in spec.fields if f.type == "datetime"}


def compose(
    template: NotificationTemplate,
    *,
    form: Form,
    event_type: str,
    data: Mapping[str, Any],
    client: Client,
    default_zone: str,
    notification_id: int = 0,
    headers: Mapping[str, str] | None = None,
    buttons: tuple[tuple[Button, ...], ...] = (),
    attachment: Attachment | None = None,
) -> RenderedMessage:
    """Render a template for one client; raises TemplateError naming what failed."""
    locale = template.locale or client.locale or "ru"
    declared, datetime_fields = _declared(event_type)
    # Optional fields the event left out are defined as None, so `{% if reason %}`
    # works; a name nobody declared is still an error (StrictUndefined).
    data = {**dict.fromkeys(declared), **data}
    ctx = build_context(
        data,
        datetime_fields=datetime_fields,
        locale=locale,
        tz=client.timezone or default_zone,  # VESTNIK_DEFAULT_TIMEZONE for a client without one
        client=client_variables(client),
    )
    about = {"event_type": event_type, "client_id": client.id or None, "locale": locale}
    if form.html_part:
        # Subject and body in one call: a template that needs the render process makes one trip.
        with_subject = form.subject_mode != "none" and bool((template.subject or "").strip())
        jobs = [(template.subject or "", ctx, False)] if with_subject else []
        results = render_many([*jobs, (template.body, ctx, True)], locale=locale)
        for result in results:
            if isinstance(result, TemplateError):
                raise result
        subject = str(results[0]).strip() if with_subject else None
        if subject is not None and len(subject.splitlines()) > 1:  # CR, LF and every other line end
            raise TemplateError("the subject renders to more than one line")
        # A javascript: or data: link, from the template or from a variable in an href, fails this notification.
        html_body = refuse_unsafe_links(str(results[-1]))
        return RenderedMessage(
            notification_id=notification_id,
            subject=(subject or "") if form.subject_mode == "required" else subject,
            text=html_to_text(html_body),
            html=html_body,
            headers=dict(headers or {}),
            attachment=attachment,
            **about,
        )
    text = form.finish_text(refuse_unsafe_links(render(template.body, ctx, html_mode=True, locale=locale)))
    if not text.strip():
        raise TemplateError("the template renders to an empty message")
    return RenderedMessage(notification_id=notification_id, text=text, headers=dict(headers or {}),
                           buttons=buttons, attachment=attachment, **about)
