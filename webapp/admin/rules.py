"""Rules in the admin: switch an event type off, change a step's offsets, or attach a file to a
step's messages (``file:<id>``, a URL, ``tg:<file_id>``: checked against the step's channels when
saved, ``workers/attachments.py``), without a deploy.  Defaults live in code (``workers/rules.py``); a change is
a ``rule_overrides`` row read by the worker for the next event, and an audit
entry.  Support users see the page; only admins can change it.
"""

from __future__ import annotations

import re
from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from vestnik.shared.events import all_event_types
from vestnik.shared.models import RuleOverride
from vestnik.webapp.admin.base import SecureView, audit, can_write
from vestnik.webapp.db import get_session
from vestnik.workers import attachments
from vestnik.workers.channels import CHANNELS
from vestnik.workers.handling import load_override  # the worker's own reading of an override
from vestnik.workers.rules import DEFAULT_RULES, effective_rule

#: "24h", "-24h", "2d", "90m", "30s" or bare hours; negative = before the anchor
_OFFSET = re.compile(r"^\s*([+-]?[0-9]{1,6}(?:\.[0-9]{1,3})?)\s*(d|h|m|min|s)?\s*$", re.ASCII)
#: an offset further than this from its anchor is a typo (and a timedelta past datetime's range)
MAX_OFFSET_S = 366 * 86400
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "min": 60, "s": 1, None: 3600}
MAX_OFFSETS = 5


def parse_offsets(text: str) -> list[float]:
    """``"-24h, -2h"`` -> ``[-86400.0, -7200.0]``; ValueError naming the bad part."""
    values = []
    for part in [p for p in text.split(",") if p.strip()]:
        match = _OFFSET.match(part)
        if match is None:
            raise ValueError(f"{part.strip()!r} is not an offset like -24h, 2d, 90m")
        value = float(match.group(1)) * _UNIT_S[match.group(2)]
        if abs(value) > MAX_OFFSET_S:
            raise ValueError(f"{part.strip()!r} is more than a year from the anchor")
        values.append(value)
    if not values:
        raise ValueError(gettext("at least one offset is needed"))
    if len(values) > MAX_OFFSETS:
        raise ValueError(gettext("at most %(n)s offsets", n=MAX_OFFSETS))
    return sorted(values)


def format_offsets(offsets: tuple[float, ...]) -> str:
    def one(s: float) -> str:
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if s and s % size == 0:
                return f"{int(s // size)}{unit}"
        return f"{int(s)}s"

    return ", ".join(one(o) for o in offsets)


#: The events' descriptions (``shared/events.py``, their docstrings), marked here for the admin's catalogue;
#: ``tests/integration/test_admin_russian.py`` fails when an event's text is not among them.
DESCRIPTIONS = {
    "balance_changed": _l("A client's balance changed: the low-balance notice goes out only when it crosses below "
                          "the threshold."),
    "booking_cancelled": _l("A booking was cancelled: everything scheduled for it is cancelled, the client is told."),
    "booking_created": _l("A booking from the external booking system: confirmation, reminder, feedback request."),
    "booking_moved": _l("A booking moved: the notice now, its reminder and feedback request move too."),
    "client_activated": _l("The client did what onboarding asks (e.g. booked a first lesson): the chain stops."),
    "client_registered": _l("A new client: the onboarding chain starts (day 0, day 3, day 7)."),
    "feedback_received": _l("A client rated a visit (a button in Telegram): 5 gets review links, 1-4 a thank-you."),
    "invoice_created": _l("An invoice with a payment link was issued."),
    "job_finished": _l("A long-running job (a report) finished: statistics and the result file as a document."),
    "lesson_cancelled": _l("A lesson was cancelled."),
    "lesson_reminder": _l("A lesson was scheduled for these clients (or they enrolled): reminders are planned before "
                          "it. Formerly ``lesson_scheduled`` (still accepted, stored as ``lesson_reminder``)."),
    "lesson_rescheduled": _l("A lesson moved to another time or room."),
    "mass_broadcast": _l("A broadcast of one template to many clients (free template data allowed); it runs as a "
                         "broadcast (paced, with progress, pause and cancel in the admin) with initiator system."),
    "payment_success": _l("A payment was received (SBP callback or a manual mark)."),
}


#: The steps' conditions (``workers/rules.py`` ``Step.when``), marked for the catalogue likewise.
CONDITIONS = (_l("rating is 5"), _l("rating is 1 to 4"), _l("the balance crossed below the threshold"))


def describe_event(event: Any) -> str:
    """The event's description in the admin's language (as written when the catalogue lacks it)."""
    return gettext(event.description)  # noqa: INT001 - the texts are marked in DESCRIPTIONS


class RulesView(SecureView):
    def _rows(self) -> list[dict[str, Any]]:
        db = get_session()
        rows = []
        for event in all_event_types():
            if event.name not in DEFAULT_RULES:
                continue
            override = load_override(db, event.name)
            rule = effective_rule(event.name, override)
            record = db.get(RuleOverride, event.name)
            rows.append({
                "event": event, "description": describe_event(event), "rule": rule,
                "default": DEFAULT_RULES[event.name],
                "timed": [s for s in rule.steps if s.anchor or s.offsets_s != (0.0,)],
                "override": record, "format": format_offsets,
                "attachments": (record.attachments or {}) if record else {},
            })
        return rows

    @expose("/")
    def index(self):
        return self.render("admin/rules.html", rows=self._rows(), writable=can_write())

    @expose("/<event_type>", methods=["POST"])
    def save(self, event_type: str):
        if not can_write():
            abort(403)
        default = DEFAULT_RULES.get(event_type)
        if default is None:
            abort(404)
        db = get_session()
        enabled = request.form.get("enabled") == "on"
        offsets: dict[str, list[float]] = {}
        attached: dict[str, str] = {}
        for step in default.steps:
            typed = (request.form.get(f"attachment_{step.name}") or "").strip()
            if typed:
                channels = step.channels or [c for c, cls in CHANNELS.items() if cls.address_field]
                try:
                    attached[step.name] = str(attachments.check_reference(db, typed, channels))
                except ValueError as exc:
                    flash(f"{event_type} / {step.name}: attachment: {exc}", "error")
                    return redirect(url_for(".index"))
            field = f"offsets_{step.name}"
            if field not in request.form:
                continue
            try:
                values = parse_offsets(request.form[field])
            except ValueError as exc:
                flash(f"{event_type} / {step.name}: {exc}", "error")
                return redirect(url_for(".index"))
            if tuple(values) != step.offsets_s:
                offsets[step.name] = values
        record = db.get(RuleOverride, event_type)
        before = ({"enabled": record.enabled, "offsets": record.offsets, "attachments": record.attachments or {}}
                  if record else {"enabled": True, "offsets": {}, "attachments": {}})
        after = {"enabled": enabled, "offsets": offsets, "attachments": attached}
        if before == after:
            flash(gettext("%(event)s: nothing changed", event=event_type), "info")
            return redirect(url_for(".index"))
        if after == {"enabled": True, "offsets": {}, "attachments": {}}:
            if record is not None:
                db.delete(record)  # back to the defaults in code
        else:
            if record is None:
                record = RuleOverride(event_type=event_type)
                db.add(record)
            record.enabled, record.offsets, record.updated_by = enabled, offsets, current_user.actor
            record.attachments = attached
        audit("rule.update", "rule", event_type, {"before": before, "after": after})
        db.commit()
        flash(gettext("%(event)s: saved; it applies to the next event", event=event_type), "success")
        return redirect(url_for(".index"))
