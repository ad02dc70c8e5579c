"""From a template, event data and a client to the message a channel sends.

Used by delivery (just before the send) and by the admin's preview, so what an
admin previews is exactly what a client gets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vestnik.shared import locales
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
    telegram_html,
)


def find_template(
    session: Session, code: str, channel: str, locale: str, default_locale: str = "ru",
    fallback: Mapping[str, tuple[str, ...]] | None = None,
) -> NotificationTemplate:
    """The active template for code x channel in the client's locale, else the next one of its fallback
    chain (``shared.locales.chain``: VESTNIK_LOCALE_FALLBACK, then the default locale, then the rest)."""
    rows = session.scalars(
        select(NotificationTemplate).where(
            NotificationTemplate.code == code,
            NotificationTemplate.channel == channel,
            NotificationTemplate.is_active.is_(True),
        )
    ).all()
    by_locale = {t.locale: t for t in rows}
    for candidate in locales.chain(locale, fallback, default_locale):
        if candidate in by_locale:
            return by_locale[candidate]
    if rows:
        return rows[0]
    raise TemplateNotFound(f"no active template {code!r} for channel {channel!r}")


def missing_translations(session: Session) -> dict[tuple[str, str], tuple[str, ...]]:
    """``(code, channel) -> the supported locales without an active template``, for the pairs that lack
    some: a client in such a locale gets a fallback's text (``shared.locales.chain``).  The admin's
    template list marks these rows, so a missing translation is found there, not by a client."""
    have: dict[tuple[str, str], set[str]] = {}
    for code, channel, locale in session.execute(
            select(NotificationTemplate.code, NotificationTemplate.channel, NotificationTemplate.locale)
            .where(NotificationTemplate.is_active.is_(True))):
        have.setdefault((code, channel), set()).add(locale)
    out = {pair: tuple(loc for loc in locales.SUPPORTED if loc not in found) for pair, found in have.items()}
    return {pair: missing for pair, missing in out.items() if missing}


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
    if template.channel == "email":
        # Subject and body in one call: a template that needs the render process makes one trip.
        subject_or_error, body_or_error = render_many(
            [(template.subject or "", ctx, False), (template.body, ctx, True)], locale=locale)
        for result in (subject_or_error, body_or_error):
            if isinstance(result, TemplateError):
                raise result
        subject = str(subject_or_error).strip()
        if len(subject.splitlines()) > 1:  # CR, LF and every other line end Python's email package knows
            raise TemplateError("the subject renders to more than one line")
        # A javascript: or data: link, from the template or from a variable in an href, fails this notification.
        html_body = refuse_unsafe_links(str(body_or_error))
        return RenderedMessage(
            notification_id=notification_id,
            subject=subject,
            text=html_to_text(html_body),
            html=html_body,
            headers=dict(headers or {}),
            attachment=attachment,
            locale=locale,
        )
    text = refuse_unsafe_links(render(template.body, ctx, html_mode=True, locale=locale))
    if template.channel == "telegram":
        text = telegram_html(text)
    if not text.strip():
        raise TemplateError("the template renders to an empty message")
    return RenderedMessage(notification_id=notification_id, text=text, headers=dict(headers or {}),
                           buttons=buttons, attachment=attachment, locale=locale)
