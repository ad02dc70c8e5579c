"""Checks a template must pass before it is saved (admin form, and tests).

Returns ``(field, message)`` pairs so the admin shows each problem at its
field: syntax errors with the line, variables the event does not offer,
sandbox violations found by rendering the example data, Telegram's 4096
characters and its short list of HTML tags, and an email subject on one line.
"""

from __future__ import annotations

from vestnik.shared.errors import TemplateError
from vestnik.shared.events import CLIENT_VARIABLES, EventType, get_event_type
from vestnik.shared.models import Client
from vestnik.shared.rendering import (
    build_context,
    check_syntax,
    render,
    unsafe_links,
)
from vestnik.workers.channels import CHANNELS
from vestnik.workers.channels.telegram import TelegramChannel
from vestnik.workers.rules import DEFAULT_RULES

#: the editor's live counter shows Telegram's limit (the check itself is the channel's)
TELEGRAM_MAX_CHARS = TelegramChannel.body_maxlen


def event_types_using(code: str) -> list[EventType]:
    names = {r.event_type for r in DEFAULT_RULES.values() for s in r.steps if s.template_code == code}
    return [get_event_type(n) for n in sorted(names)]


def example_client(locale: str = "ru") -> Client:
    names = {"ru": "Анна Смирнова", "uz-latn": "Dilnoza Karimova"}
    return Client(id=42, name=names.get(locale, "Anna Smith"), locale=locale,
                  timezone="Europe/Moscow")


def check_template(code: str, channel: str, subject: str, body: str, locale: str = "ru") -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    used: dict[str, set[str]] = {}
    for field, source in (("subject", subject), ("body", body)):
        try:
            used[field] = check_syntax(source)
        except TemplateError as exc:
            problems.append((field, f"syntax error: {exc}"))
    if problems:
        return problems
    form = CHANNELS.get(channel)
    if form is None:
        return [("channel", f"unknown channel {channel!r} (known: {', '.join(sorted(CHANNELS))})")]
    problems += form.template_problems(subject, body)
    events = event_types_using(code)
    client_names = {f.name for f in CLIENT_VARIABLES}
    for event in events:
        offered = client_names | {f.name for f in event.fields}
        for field, names in used.items():
            unknown = sorted(names - offered - {"money", "date"})
            if unknown:
                problems.append((field, f"{', '.join(unknown)}: not offered by the {event.name} event "
                                        f"(available: {', '.join(sorted(offered))})"))
    if problems:
        return problems
    # A dry run with the examples catches what parsing cannot (sandbox violations, bad filters).
    examples = [(e.example_data(), {f.name for f in e.fields if f.type == "datetime"},
                 {f.name for f in e.fields}) for e in events] or [({}, set(), set())]
    for data, datetime_fields, declared in examples:
        ctx = build_context({**dict.fromkeys(declared), **data}, datetime_fields=datetime_fields, locale=locale,
                            tz="Europe/Moscow", client={"name": "Анна", "client_id": 42})
        for field, source in (("subject", subject), ("body", body)):
            if not source or (field == "subject" and form.subject_mode == "none"):
                continue
            try:
                out = render(source, ctx, html_mode=field == "body", locale=locale)
            except TemplateError as exc:
                if not events and "undefined" in str(exc):
                    continue  # a broadcast template: its data is given per broadcast
                problems.append((field, str(exc)))
                continue
            bad_links = unsafe_links(out) if field == "body" else []
            if bad_links:
                problems.append(("body", f"link {bad_links[0][:60]!r} is refused: links may only be http, https, "
                                         "mailto, tel or tg"))
            if field == "body":
                problems += form.rendered_problems(out)
    return problems
