"""The event registry: every event type a CRM may emit, with its schema.

A schema is a small declarative list of fields.  ``validate_event`` checks an
event's template data against it and names every problem by field, so a CRM
developer sees ``data.amount: required`` at ``emit`` time instead of a failed
notification hours later.  The same declarations feed the admin's list of
variables (with examples) beside the template editor.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vestnik.shared import bounds
from vestnik.shared.bounds import BoundsError
from vestnik.shared.errors import EventValidationError, UnknownEventType
from vestnik.shared.models import Category
from vestnik.shared.targeting import Targeting

#: the longest text field of an event (a title, a reason, a free template variable)
MAX_TEXT_CHARS = 10_000

_URL = re.compile(r"^https?://[^\s<>\"']+$", re.IGNORECASE)


def _reason(parse: Callable[..., Any], value: Any, **kwargs: Any) -> str | None:
    """What the bounded parser says is wrong with ``value`` (None when it is fine)."""
    try:
        parse(value, "", **kwargs)
    except BoundsError as exc:
        return exc.reason
    return None


def _check_str(value: Any) -> str | None:
    # Control characters are the CRM's data (channels keep them off the wire); NUL cannot be stored.
    return _reason(bounds.text, value, min_chars=1, max_chars=MAX_TEXT_CHARS, controls=True)


def _check_datetime(value: Any) -> str | None:
    if not isinstance(value, str):  # the event is JSON: a time travels as ISO 8601 text
        return "must be an ISO 8601 time with offset, e.g. 2026-11-25T16:00:00+03:00"
    return _reason(bounds.moment, value)


def _check_date(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be an ISO 8601 date, e.g. 2026-11-30"
    return _reason(bounds.day, value)


def _check_money(value: Any) -> str | None:
    return _reason(bounds.amount, value)


def _check_url(value: Any) -> str | None:
    # Only http(s): a javascript: or data: link must never reach a button or an email.
    return None if isinstance(value, str) and _URL.match(value) else "must be an http(s) URL"


def _check_int(value: Any) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return "must be an integer"
    return _reason(bounds.integer, value)


def _check_dict(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be an object"


def _check_targeting(value: Any) -> str | None:
    try:
        Targeting.parse(value if isinstance(value, dict) else None)
    except ValueError as exc:
        return str(exc)
    return None if isinstance(value, dict) else "must be an object"


def _check_channels(value: Any) -> str | None:
    """The shape only: which names exist is the workers' registry's to say (checked when the
    broadcast starts, and the event fails with the choices if one is unknown)."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        return "must be a non-empty list of channel names"
    if len(value) > 16 or any(len(v) > 32 for v in value):
        return "at most 16 channel names of at most 32 characters"
    return None


CHECKS: dict[str, Callable[[Any], str | None]] = {
    "targeting": _check_targeting,
    "channels": _check_channels,
    "str": _check_str,
    "datetime": _check_datetime,
    "date": _check_date,
    "money": _check_money,
    "url": _check_url,
    "int": _check_int,
    "dict": _check_dict,
}


@dataclass(frozen=True)
class Field:
    name: str
    type: str = "str"
    required: bool = True
    choices: tuple[str, ...] = ()
    example: Any = None
    description: str = ""

    def problem(self, value: Any) -> str | None:
        if self.choices:
            return _reason(bounds.choice, value, choices=self.choices)
        return CHECKS[self.type](value)


@dataclass(frozen=True)
class EventType:
    name: str
    category: Category
    fields: tuple[Field, ...] = ()
    description: str = ""
    #: the template used for the immediate notice (rules may add more)
    template_code: str | None = None
    #: accept keys the schema does not declare (free template data)
    open_data: bool = False
    #: variables every template of this event can use besides ``fields``
    extra_variables: tuple[Field, ...] = field(default=())
    #: a data field that may name the recipients instead of the recipient list (a broadcast's targeting)
    targets_field: str | None = None

    def example_data(self) -> dict[str, Any]:
        return {f.name: f.example for f in self.fields if f.example is not None}

    def variables(self) -> tuple[Field, ...]:
        """What a template of this event may use: client fields, then the event's data."""
        return CLIENT_VARIABLES + self.fields + self.extra_variables


#: Every template may use these: they come from the client, not the event.
CLIENT_VARIABLES = (
    Field("name", example="Анна Смирнова", description="the client's name"),
    Field("client_id", "int", example=42, description="the client's id in the CRM"),
)

_REGISTRY: dict[str, EventType] = {}


def register(event_type: EventType) -> EventType:
    _REGISTRY[event_type.name] = event_type
    return event_type


def get_event_type(name: str) -> EventType:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownEventType(name) from None


def all_event_types() -> list[EventType]:
    return sorted(_REGISTRY.values(), key=lambda e: e.name)


def validate_event(
    event_type: str,
    data: Mapping[str, Any] | None,
    *,
    recipients: Iterable[Any] | None = None,
) -> EventType:
    """Check an event; raise EventValidationError naming every bad field."""
    spec = get_event_type(event_type)
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise EventValidationError(event_type, ["data: must be an object"])
    for f in spec.fields:
        if f.name not in data or data[f.name] is None:
            if f.required:
                problems.append(f"data.{f.name}: required")
            continue
        why = f.problem(data[f.name])
        if why:
            problems.append(f"data.{f.name}: {why}")
    if not spec.open_data:
        known = {f.name for f in spec.fields}
        for name in sorted(set(data) - known):
            problems.append(f"data.{name}: unknown field (declared: {', '.join(sorted(known)) or 'none'})")
    # PostgreSQL's text and jsonb cannot hold NUL: refused here, by name, not by the CRM's commit failing.
    problems += [f"{path}: contains a NUL character or a lone surrogate (not storable)"
                 for path in bounds.nul_paths(data, "data")]
    if recipients is not None:
        recipient_list = list(recipients)
        if not recipient_list and not (spec.targets_field and data.get(spec.targets_field)):
            problems.append("recipients: at least one client id is required"
                            + (f" (or data.{spec.targets_field})" if spec.targets_field else ""))
        bad = [r for r in recipient_list if _reason(bounds.identifier, r) or not isinstance(r, int)]
        if bad:
            problems.append(f"recipients: client ids must be positive whole numbers up to {bounds.MAX_BIGINT}, "
                            f"got {bad[:5]!r}"[:300])
    if problems:
        raise EventValidationError(event_type, problems)
    return spec


# ---------------------------------------------------------------- V1 events

register(
    EventType(
        "lesson_cancelled",
        Category.service,
        (
            Field("lesson_title", example="Робототехника", description="the lesson's title"),
            Field("starts_at", "datetime", example="2026-11-25T16:00:00+03:00",
                  description="when the lesson was to start"),
            Field("reason", required=False, example="болезнь преподавателя", description="why it is cancelled"),
        ),
        "A lesson was cancelled.",
        template_code="LESSON_CANCELLED",
    )
)
register(
    EventType(
        "lesson_rescheduled",
        Category.service,
        (
            Field("lesson_title", example="Робототехника"),
            Field("old_starts_at", "datetime", example="2026-11-25T16:00:00+03:00", description="the old time"),
            Field("starts_at", "datetime", example="2026-11-26T17:30:00+03:00", description="the new time"),
            Field("room", required=False, example="Аудитория 3", description="the new room"),
        ),
        "A lesson moved to another time or room.",
        template_code="LESSON_RESCHEDULED",
    )
)
register(
    EventType(
        "invoice_created",
        Category.service,
        (
            Field("invoice_number", example="INV-2026-017"),
            Field("amount", "money", example="4500.00"),
            Field("currency", example="RUB"),
            Field("payment_url", "url", example="https://pay.example.com/i/17"),
            Field("due_date", "date", required=False, example="2026-11-30"),
        ),
        "An invoice with a payment link was issued.",
        template_code="INVOICE_CREATED",
    )
)
register(
    EventType(
        "payment_success",
        Category.service,
        (
            Field("amount", "money", example="4500.00"),
            Field("currency", example="RUB"),
            Field("invoice_number", required=False, example="INV-2026-017"),
            Field("method", choices=("sbp", "manual"), example="sbp", description="sbp or manual"),
        ),
        "A payment was received (SBP callback or a manual mark).",
        template_code="PAYMENT_SUCCESS",
    )
)
register(
    EventType(
        "mass_broadcast",
        Category.service,  # the event's own data.category decides per broadcast
        (
            Field("template_code", example="ANNOUNCEMENT"),
            Field("category", choices=("service", "marketing"), example="service"),
            Field("targeting", "targeting", required=False, example={"groups": ["Робототехника"]},
                  description="instead of recipients: groups, tags, locales, has_telegram, has_email, active_since"),
            Field("channels", "channels", required=False, example=["telegram", "email"],
                  description="the channels to use (default: every channel the client allows)"),
            Field("broadcast_name", required=False, example="Занятия 25 ноября отменены",
                  description="the name shown in the admin's broadcasts"),
        ),
        "A broadcast of one template to many clients (free template data allowed); it runs as a broadcast "
        "(paced, with progress, pause and cancel in the admin) with initiator system.",
        open_data=True,
        targets_field="targeting",
    )
)

# ---------------------------------------------------------------- time-based flows (rules in workers/rules.py)

register(
    EventType(
        "lesson_scheduled",
        Category.service,
        (
            Field("lesson_title", example="Робототехника"),
            Field("starts_at", "datetime", example="2026-11-25T16:00:00+03:00"),
            Field("room", required=False, example="Аудитория 3"),
        ),
        "A lesson was scheduled for these clients (or they enrolled): reminders are planned before it.",
    )
)
register(
    EventType(
        "client_registered",
        Category.service,
        (Field("first_step_url", "url", example="https://school.example.com/start", description="what to do first"),),
        "A new client: the onboarding chain starts (day 0, day 3, day 7).",
    )
)
register(
    EventType(
        "client_activated",
        Category.service,
        (),
        "The client did what onboarding asks (e.g. booked a first lesson): the chain stops.",
    )
)
_BOOKING = (
    Field("booking_id", example="B-2041"),
    Field("service", example="Пробное занятие"),
    Field("starts_at", "datetime", example="2026-11-27T11:00:00+03:00"),
    Field("ends_at", "datetime", example="2026-11-27T12:00:00+03:00"),
    Field("place", required=False, example="ул. Ленина, 5"),
)
register(EventType("booking_created", Category.service, _BOOKING,
                   "A booking from the external booking system: confirmation, reminder, feedback request."))
register(EventType("booking_moved", Category.service, _BOOKING,
                   "A booking moved: the notice now, its reminder and feedback request move too."))
register(EventType("booking_cancelled", Category.service, _BOOKING[:3],
                   "A booking was cancelled: everything scheduled for it is cancelled, the client is told."))
register(
    EventType(
        "feedback_received",
        Category.service,
        (Field("booking_id", example="B-2041"), Field("rating", "int", example=5)),
        "A client rated a visit (a button in Telegram): 5 gets review links, 1-4 a thank-you.",
    )
)
register(
    EventType(
        "job_finished",
        Category.service,
        (
            Field("job_title", example="Отчёт о посещаемости за ноябрь"),
            Field("stats", "dict", example={"rows": 1240, "duration_s": 42}),
            Field("file_url", "url", required=False, example="https://crm.example.com/reports/11.xlsx"),
            Field("file_name", required=False, example="attendance-2026-11.xlsx"),
        ),
        "A long-running job (a report) finished: statistics and the result file as a document.",
    )
)
register(
    EventType(
        "balance_changed",
        Category.service,
        (
            Field("balance", "money", example="350.00"),
            Field("previous_balance", "money", example="1200.00"),
            Field("threshold", "money", example="500.00"),
            Field("currency", example="RUB"),
        ),
        "A client's balance changed: the low-balance notice goes out only when it crosses below the threshold.",
    )
)


def category_of(event_type: str, data: Mapping[str, Any]) -> Category:
    """The preference category that decides whether a client hears about this event."""
    spec = get_event_type(event_type)
    if spec.name == "mass_broadcast":
        return Category(data.get("category", Category.service.value))
    return spec.category
