"""From a template, event data and a client to the message a channel sends.

Used by delivery (just before the send) and by the admin's preview, so what an
admin previews is exactly what a client gets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from vestnik.shared import buttons as shared_buttons
from vestnik.shared import locales
from vestnik.shared.errors import TemplateError, TemplateNotFound
from vestnik.shared.events import get_event_type
from vestnik.shared.messages import Attachment, Button, RenderedMessage
from vestnik.shared.models import Client, NotificationTemplate
from vestnik.shared.rendering import (
    build_context,
    html_to_text,
    refuse_unsafe_links,
    render_many,
    variables_read,
)

#: A batch's memo (a dict the caller keeps for one batch, one thread): a template that reads the same
#: values renders to the same text, so a batch of one event renders once per distinct input, not per
#: client (a Telegram template that does not greet by name renders once for a hundred clients).
Memo = dict[Any, Any]
_ABSENT = object()


class Form(Protocol):
    """What the composer needs to know of a channel (``workers.channels.base.Channel`` declares it)."""

    #: "required", "optional" or "none"
    subject_mode: str
    #: an HTML part plus a plain-text part made from it; otherwise one text, finished by finish_text
    html_part: bool
    #: inline buttons reach the recipient (the template's own buttons are added only then)
    supports_buttons: bool

    def finish_text(self, text: str) -> str: ...


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


def template_buttons(template: NotificationTemplate, ctx: Mapping[str, Any], locale: str,
                     memo: Memo | None = None) -> tuple[tuple[Button, ...], ...]:
    """The admin's buttons of a Telegram template, texts and links rendered with the message's data."""
    try:
        specs = shared_buttons.parse(template.buttons)
    except shared_buttons.ButtonError as exc:  # saved before a check existed, or edited in the database
        raise TemplateError(f"buttons: {exc}") from None
    flat = [s for row in specs for s in row]
    if not flat:
        return ()
    results = _render_many([(s.text, ctx, False) for s in flat] + [(s.url or "", ctx, False) for s in flat],
                           locale, memo)
    for result in results:
        if isinstance(result, TemplateError):
            raise TemplateError(f"buttons: {result}")
    made = [Button(str(text).strip(), url=str(url).strip()) if s.url is not None
            else Button(str(text).strip(), callback_data=shared_buttons.CALLBACK_PREFIX + (s.callback or ""))
            for s, text, url in zip(flat, results[:len(flat)], results[len(flat):], strict=True)]
    rows, i = [], 0
    for row in specs:
        rows.append(tuple(made[i:i + len(row)]))
        i += len(row)
    try:
        shared_buttons.check_rendered(tuple(rows))
    except shared_buttons.ButtonError as exc:
        raise TemplateError(f"buttons: {exc}") from None
    return tuple(rows)


def client_variables(client: Client) -> dict[str, Any]:
    """``client_id`` is the CRM's id: the integer, or the CRM's string id (a UUID) for a client that has one
    (its row key is negative then: shared/client_ids.py)."""
    key = client.id
    return {"name": client.name, "client_id": key if key is None or key >= 0 else getattr(client, "crm_id", key)}


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
    memo: Memo | None = None,
) -> RenderedMessage:
    """Render a template for one client; raises TemplateError naming what failed.  ``memo``: see
    :data:`Memo` (delivery passes one per batch; the admin's preview renders afresh)."""
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
        client=(variables := client_variables(client)),
    )
    about = {"event_type": event_type, "client_id": variables["client_id"] or None, "locale": locale}
    if form.html_part:
        # Subject and body in one call: a template that needs the render process makes one trip.
        with_subject = form.subject_mode != "none" and bool((template.subject or "").strip())
        jobs = [(template.subject or "", ctx, False)] if with_subject else []
        results = _render_many([*jobs, (template.body, ctx, True)], locale, memo)
        for result in results:
            if isinstance(result, TemplateError):
                raise result
        subject = str(results[0]).strip() if with_subject else None
        if subject is not None and len(subject.splitlines()) > 1:  # CR, LF and every other line end
            raise TemplateError("the subject renders to more than one line")
        # A javascript: or data: link, from the template or from a variable in an href, fails this notification.
        html_body = _once(memo, "links", refuse_unsafe_links, str(results[-1]))
        return RenderedMessage(
            notification_id=notification_id,
            subject=(subject or "") if form.subject_mode == "required" else subject,
            text=_once(memo, "text", html_to_text, html_body),
            html=html_body,
            headers=dict(headers or {}),
            attachment=attachment,
            **about,
        )
    [body_or_error] = _render_many([(template.body, ctx, True)], locale, memo)
    if isinstance(body_or_error, TemplateError):
        raise body_or_error
    text = _once(memo, "links", refuse_unsafe_links, body_or_error)
    text = _once(memo, f"finish:{getattr(form, 'name', '')}", form.finish_text, text)
    if template.buttons and form.supports_buttons:  # the admin's inline buttons first, then the rule's and the way out
        buttons = template_buttons(template, ctx, locale, memo) + buttons
    if not text.strip():
        raise TemplateError("the template renders to an empty message")
    return RenderedMessage(notification_id=notification_id, text=text, headers=dict(headers or {}),
                           buttons=buttons, attachment=attachment, **about)


def _once(memo: Memo | None, kind: str, fn: Callable[[str], str], text: str) -> str:
    """``fn(text)``, computed once per batch for equal texts (errors are raised each time)."""
    if memo is None:
        return fn(text)
    key = (kind, text)
    found = memo.get(key)
    if found is None:
        found = memo[key] = fn(text)
    return found


def _render_many(jobs: list[tuple[str, Mapping[str, Any], bool]], locale: str, memo: Memo | None
                 ) -> list[str | TemplateError]:
    """:func:`render_many`, reusing the batch's texts of the same source rendered from the same values
    of the names it reads (a failure is not kept: it is raised again for each row)."""
    if memo is None:
        return render_many(jobs, locale=locale)
    keys: list[Any] = []
    for source, ctx, html_mode in jobs:
        names = variables_read(source)
        key = None
        if names is not None:
            key = ("render", source, html_mode, locale, tuple(ctx.get(n, _ABSENT) for n in names))
            try:
                hash(key)
            except TypeError:  # a list or a dict in the data: rendered each time
                key = None
        keys.append(key)
    results: list[str | TemplateError | None] = [memo.get(k) if k is not None else None for k in keys]
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        for i, out in zip(todo, render_many([jobs[i] for i in todo], locale=locale), strict=True):
            results[i] = out
            if keys[i] is not None and not isinstance(out, TemplateError):
                memo[keys[i]] = out
    return results  # type: ignore[return-value]
