"""Rules: what an event means, as pure functions of the event and the clients.

A :class:`Rule` says, per event type, which templates go out on which channels
and when: immediately, at an offset from a time in the payload (24 h before
``starts_at``, 2 h after ``ends_at``), or as a chain (day 0, day 3, day 7),
with optional conditions on the payload.  A rule may first cancel every
pending notification with the event's key (``payment_success`` cancels the
``invoice:17`` reminders; ``lesson_rescheduled`` cancels the old reminders and
plans new ones from the new time).

Defaults live here, in code; admins switch an event type off or change a
step's offsets without a deploy through ``rule_overrides`` rows (audited),
which :func:`effective_rule` applies.

``plan_event`` then decides, per recipient and channel, whether a row is
created (section 3.2 of the specification: a channel the client switched off
creates nothing; the event's category must be allowed).  Nothing here touches
the database or the network, so it is table-tested.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from vestnik.shared.events import category_of
from vestnik.shared.models import Category, Client
from vestnik.workers.channels.base import Button, Channel
from vestnik.workers.quiet_hours import Policy, hold_until, own_window, zone_of

HOUR = 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True)
class Step:
    """One message of a rule."""

    name: str
    template_code: str | None  # None: the event names it (mass_broadcast's data.template_code)
    #: seconds from the anchor; one notification per offset (several reminders)
    offsets_s: tuple[float, ...] = (0.0,)
    #: a datetime field of the payload; None: the event's own time (its send_at, or now)
    anchor: str | None = None
    #: a datetime field past which the message makes no sense (a reminder after the lesson started)
    expires_field: str | None = None
    channels: tuple[str, ...] | None = None  # None: every channel the client allows
    condition: Callable[[Mapping[str, Any]], bool] | None = None
    when: str = ""  # the condition in words, for docs/events.md and the admin
    buttons: str | None = None  # a named button set, see ``buttons_for``
    attachment_field: str | None = None  # a payload URL fetched and sent as a document

    def code(self, data: Mapping[str, Any]) -> str:
        return self.template_code or str(data["template_code"])


@dataclass(frozen=True)
class Rule:
    event_type: str
    steps: tuple[Step, ...]
    #: cancel every pending notification with the event's key before planning
    cancels_key: bool = False
    enabled: bool = True


def _crossed_below_threshold(data: Mapping[str, Any]) -> bool:
    balance, previous, threshold = (Decimal(str(data[k])) for k in ("balance", "previous_balance", "threshold"))
    return previous >= threshold > balance


def _rating(low: int, high: int) -> Callable[[Mapping[str, Any]], bool]:
    return lambda data: low <= int(data.get("rating", 0)) <= high


_LESSON_REMINDER = Step("reminder", "LESSON_REMINDER", offsets_s=(-DAY,), anchor="starts_at",
                        expires_field="starts_at")
_BOOKING_REMINDER = Step("reminder", "BOOKING_REMINDER", offsets_s=(-DAY,), anchor="starts_at",
                         expires_field="starts_at")
_BOOKING_FEEDBACK = Step("feedback", "BOOKING_FEEDBACK", offsets_s=(2 * HOUR,), anchor="ends_at",
                         channels=("telegram",), buttons="rating")

DEFAULT_RULES: dict[str, Rule] = {
    r.event_type: r
    for r in (
        Rule("lesson_reminder", (_LESSON_REMINDER,)),
        Rule("lesson_rescheduled", (Step("notice", "LESSON_RESCHEDULED"), _LESSON_REMINDER), cancels_key=True),
        Rule("lesson_cancelled", (Step("notice", "LESSON_CANCELLED"),), cancels_key=True),
        Rule("invoice_created", (
            Step("notice", "INVOICE_CREATED", attachment_field="invoice_pdf_url"),
            Step("reminder", "PAYMENT_REMINDER", offsets_s=(3 * DAY, 7 * DAY)),
        )),
        Rule("payment_success", (Step("notice", "PAYMENT_SUCCESS"),), cancels_key=True),
        Rule("mass_broadcast", (Step("notice", None),)),
        Rule("client_registered", (
            Step("day0", "ONBOARDING_1"),
            Step("day3", "ONBOARDING_2", offsets_s=(3 * DAY,)),
            Step("day7", "ONBOARDING_3", offsets_s=(7 * DAY,)),
        )),
        Rule("client_activated", (), cancels_key=True),
        Rule("booking_created", (Step("notice", "BOOKING_CONFIRMED"), _BOOKING_REMINDER, _BOOKING_FEEDBACK)),
        Rule("booking_moved", (Step("notice", "BOOKING_MOVED"), _BOOKING_REMINDER, _BOOKING_FEEDBACK),
             cancels_key=True),
        Rule("booking_cancelled", (Step("notice", "BOOKING_CANCELLED"),), cancels_key=True),
        Rule("feedback_received", (
            Step("review", "FEEDBACK_REVIEW_LINKS", channels=("telegram",), condition=_rating(5, 5),
                 when="rating is 5"),
            Step("thanks", "FEEDBACK_THANKS", channels=("telegram",), condition=_rating(1, 4),
                 when="rating is 1 to 4"),
        )),
        Rule("job_finished", (Step("notice", "JOB_FINISHED", channels=("telegram",), attachment_field="file_url"),)),
        Rule("balance_changed", (Step("notice", "LOW_BALANCE", condition=_crossed_below_threshold,
                                      when="the balance crossed below the threshold"),)),
    )
}


@dataclass(frozen=True)
class Override:
    """An admin's change to a default rule (a ``rule_overrides`` row)."""

    enabled: bool = True
    offsets_s: Mapping[str, Sequence[float]] = field(default_factory=dict)  # step name -> offsets
    #: step name -> an attachment reference its messages carry (shared/attachment_refs.py)
    attachments: Mapping[str, str] = field(default_factory=dict)


def effective_rule(event_type: str, override: Override | None = None) -> Rule:
    rule = DEFAULT_RULES.get(event_type) or Rule(event_type, ())
    if override is None:
        return rule
    steps = tuple(
        replace(s, offsets_s=tuple(float(o) for o in override.offsets_s[s.name]))
        if s.name in override.offsets_s else s
        for s in rule.steps
    )
    return replace(rule, steps=steps, enabled=override.enabled)


def step_of(event_type: str, step_name: str, override: Override | None = None) -> Step | None:
    for s in effective_rule(event_type, override).steps:
        if s.name == step_name.split("@", 1)[0]:
            return s
    return None


def buttons_for(step: Step | None, data: Mapping[str, Any], locale: str) -> tuple[tuple[Button, ...], ...]:
    if step is None or step.buttons is None:
        return ()
    if step.buttons == "rating":
        booking = str(data.get("booking_id", ""))[:40]
        return (tuple(Button(str(n), callback_data=f"rate:{booking}:{n}") for n in range(1, 6)),)
    return ()


# ------------------------------------------------------------------ planning


@dataclass(frozen=True)
class Planned:
    recipient_id: int
    channel: str
    address: str
    template_code: str
    category: str
    locale: str
    send_at: datetime | None
    step: str = "notice"
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Skipped:
    recipient_id: int | None
    channel: str | None
    reason: str


@dataclass(frozen=True)
class Timed:
    step: Step
    label: str  # "reminder@-86400" for offset steps, the step name otherwise
    send_at: datetime | None  # None: now
    expires_at: datetime | None


def _parse_time(data: Mapping[str, Any], name: str | None) -> datetime | None:
    if not name or not isinstance(data.get(name), str):
        return None
    try:
        value = datetime.fromisoformat(data[name])
    except ValueError:
        return None
    return value if value.tzinfo else None


def schedule(rule: Rule, data: Mapping[str, Any], now: datetime, event_send_at: datetime | None
             ) -> tuple[list[Timed], list[Skipped]]:
    """The steps of a rule that apply to this payload, each with its time."""
    timed: list[Timed] = []
    skipped: list[Skipped] = []
    if not rule.enabled:
        return [], [Skipped(None, None, f"event type {rule.event_type} is switched off")]
    for step in rule.steps:
        if step.condition is not None and not step.condition(data):
            skipped.append(Skipped(None, None, f"step {step.name}: condition not met"))
            continue
        base = _parse_time(data, step.anchor) if step.anchor else (event_send_at or now)
        if base is None:
            skipped.append(Skipped(None, None, f"step {step.name}: no time in {step.anchor}"))
            continue
        expires_at = _parse_time(data, step.expires_field)
        for offset in step.offsets_s:
            at = base + timedelta(seconds=offset)
            label = step.name if len(step.offsets_s) == 1 and offset == 0 else f"{step.name}@{int(offset)}"
            if step.anchor and at < now:
                # A reminder whose time has passed when it is planned is not sent.
                skipped.append(Skipped(None, None, f"step {label}: its time {at.isoformat()} has passed"))
                continue
            timed.append(Timed(step, label, at if at > now else None, expires_at))
    return timed, skipped


def allows_category(client: Client, category: Category) -> bool:
    if category is Category.marketing:
        return bool(client.allow_marketing_notifications)
    return bool(client.allow_service_notifications)


def plan_event(
    event_type: str,
    data: Mapping[str, Any],
    recipient_ids: Sequence[int],
    clients: Iterable[Client],
    channels: Mapping[str, Channel],
    *,
    now: datetime,
    send_at: datetime | None = None,
    override: Override | None = None,
    quiet: Mapping[str, Policy] | None = None,
    default_zone: str = "UTC",
) -> tuple[list[Planned], list[Skipped]]:
    """Who is told what, on which channel, when; and who is not, with the reason.

    ``quiet``: the categories' quiet hours (:func:`vestnik.workers.quiet_hours.load_policies`); a
    message due inside its client's quiet hours is planned for their end.
    """
    rule = effective_rule(event_type, override)
    timed, skipped = schedule(rule, data, now, send_at)
    if not timed:
        return [], skipped
    by_id = {c.id: c for c in clients}
    category = category_of(event_type, data)
    planned: list[Planned] = []
    for rid in dict.fromkeys(recipient_ids):  # de-duplicated, order kept
        client = by_id.get(rid)
        if client is None:
            skipped.append(Skipped(rid, None, "unknown client"))
            continue
        if not allows_category(client, category):
            skipped.append(Skipped(rid, None, f"client does not accept {category.value} notifications"))
            continue
        for name, channel in channels.items():
            reason = channel_refusal(client, name, channel)
            if reason:
                skipped.append(Skipped(rid, name, reason))
                continue
            address = channel.address_of(client) or ""
            for t in timed:
                if t.step.channels is not None and name not in t.step.channels:
                    continue
                at = t.send_at
                if quiet is not None:
                    at = hold_until(at or now, category=category.value, event_type=event_type,
                                    zone=zone_of(client.timezone, default_zone),
                                    own=own_window(client.quiet_hours_start_min, client.quiet_hours_end_min),
                                    policies=quiet) or at
                planned.append(Planned(rid, name, address, t.step.code(data), category.value,
                                       client.locale or "ru", at, t.label, t.expires_at))
    return planned, skipped


def channel_refusal(client: Client, name: str, channel: Channel) -> str | None:
    """Why this client must not be reached on this channel now, or None.  Asked when a
    notification is planned and again right before it is sent (preferences change meanwhile)."""
    if not client.channel_enabled(name):
        return "channel switched off by the client"
    if not channel.address_of(client):
        return "no address"
    if client.unreachable_reason(name):
        return f"address unreachable: {client.unreachable_reason(name)}"
    return None
