"""The demo CRM: what integrating Vestnik looks like from the CRM's side.

Every button is a POST that runs one real CRM transaction, always the same
three steps (this is the pattern docs/integration.md describes):

1. change the CRM's own rows;
2. ``emit(...)`` the event into the *same* session: one INSERT into
   ``outbox_events``, no network, no commit;
3. commit once: the change and the event exist together, or neither does.

Nothing here knows about Telegram, email, templates or queues: Vestnik
decides who is told, how and when.  The ``idempotency_key`` makes a
double-clicked button emit once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.wrappers import Response
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from vestnik.outbox import emit
from vestnik.shared.models import Client
from vestnik.webapp import get_settings
from vestnik.webapp.db import get_session
from vestnik.webapp.demo import demo_pages
from vestnik.webapp.demo_seed import invoice_number
from vestnik.webapp.democrm_models import Group, Invoice, Lesson

bp = Blueprint("democrm", __name__)

INITIATOR = "demo-crm"  # shown in Vestnik's history as who caused the notification


class AnnounceForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(), Length(max=120)])
    text = TextAreaField("Text", validators=[DataRequired(), Length(max=1000)])


def school_zone() -> ZoneInfo:
    return ZoneInfo(get_settings().default_timezone)


@bp.app_template_filter("school_time")
def school_time(value: datetime) -> str:
    """A UTC time as the school's staff read it: 'Tue 12 May, 16:00'."""
    return value.astimezone(school_zone()).strftime("%a %d %b, %H:%M")


@bp.get("/")
def index() -> str:
    db = get_session()
    return render_template(
        "democrm/index.html",
        groups=db.scalars(select(Group).order_by(Group.id)).all(),
        lessons=db.scalars(select(Lesson).order_by(Lesson.starts_at)).all(),
        invoices=db.scalars(select(Invoice).order_by(Invoice.id.desc())).all(),
        clients={c.id: c for c in db.scalars(select(Client).order_by(Client.id))},
        now=datetime.now(UTC),
        pages=demo_pages(),
        announce=AnnounceForm(title="Объявление", text="Занятия на следующей неделе пройдут по расписанию."),
    )


# ------------------------------------------------------------ CRM transactions


@bp.post("/lessons/<int:lesson_id>/cancel")
def cancel_lesson(lesson_id: int) -> Response:
    db = get_session()
    lesson = db.get(Lesson, lesson_id) or abort(404)
    if lesson.status != "scheduled":
        return done(f"The {lesson.group.title} lesson is already {lesson.status}.", "info")
    lesson.status = "cancelled"  # 1. the CRM's own change
    event_id = emit(  # 2. the event, in the same transaction
        db,
        "lesson_cancelled",
        recipients=lesson.group.client_ids,
        data={"lesson_title": lesson.group.title,
              "starts_at": lesson.starts_at.astimezone(school_zone()).isoformat(),
              "reason": "болезнь преподавателя"},
        key=f"lesson:{lesson.id}",  # later events about this lesson supersede earlier ones
        idempotency_key=f"lesson:{lesson.id}:cancelled",
        initiator=INITIATOR,
    )
    db.commit()  # 3. both or neither
    return emitted(f"Cancelled {lesson.group.title}, {school_time(lesson.starts_at)}.", event_id)


@bp.post("/lessons/<int:lesson_id>/move")
def move_lesson(lesson_id: int) -> Response:
    db = get_session()
    lesson = db.get(Lesson, lesson_id) or abort(404)
    if lesson.status != "scheduled":
        return done(f"A {lesson.status} lesson cannot be moved.", "info")
    old_starts_at, lesson.starts_at = lesson.starts_at, lesson.starts_at + timedelta(days=1)
    zone = school_zone()
    event_id = emit(
        db,
        "lesson_rescheduled",
        recipients=lesson.group.client_ids,
        data={"lesson_title": lesson.group.title,
              "old_starts_at": old_starts_at.astimezone(zone).isoformat(),
              "starts_at": lesson.starts_at.astimezone(zone).isoformat(),
              "room": lesson.room},
        key=f"lesson:{lesson.id}",
        idempotency_key=f"lesson:{lesson.id}:moved-to:{lesson.starts_at.isoformat()}",
        initiator=INITIATOR,
    )
    db.commit()
    return emitted(f"Moved {lesson.group.title} to {school_time(lesson.starts_at)}.", event_id)


@bp.post("/clients/<int:client_id>/invoices")
def issue_invoice(client_id: int) -> Response:
    db = get_session()
    client = db.get(Client, client_id) or abort(404)
    today = datetime.now(school_zone()).date()
    invoice = Invoice(client_id=client.id, amount_minor=450000, currency="RUB", due_date=today + timedelta(days=7))
    db.add(invoice)
    db.flush()  # the CRM needs the invoice's id for its number and payment link
    invoice.number = invoice_number(invoice.id, today)
    event_id = emit(
        db,
        "invoice_created",
        recipients=[client.id],
        data={"invoice_number": invoice.number, "amount": f"{invoice.amount:.2f}", "currency": invoice.currency,
              "payment_url": url_for("democrm.pay_page", invoice_id=invoice.id, _external=True),
              "due_date": invoice.due_date.isoformat()},
        key=f"invoice:{invoice.id}",
        idempotency_key=f"invoice:{invoice.id}:created",
        initiator=INITIATOR,
    )
    db.commit()
    return emitted(f"Issued {invoice.number} to {client.name}.", event_id)


@bp.post("/invoices/<int:invoice_id>/paid")
def mark_paid(invoice_id: int) -> Response:
    """A manager marks a payment received at the desk."""
    return _record_payment(invoice_id, method="manual")


@bp.get("/invoices/<int:invoice_id>/pay")
def pay_page(invoice_id: int) -> str:
    """Where the invoice's payment link leads: a pretend payment provider."""
    invoice = get_session().get(Invoice, invoice_id) or abort(404)
    return render_template("democrm/pay.html", invoice=invoice)


@bp.post("/invoices/<int:invoice_id>/pay")
def pay(invoice_id: int) -> Response:
    """The payment provider's callback, as the CRM would handle it (SBP)."""
    return _record_payment(invoice_id, method="sbp")


def _record_payment(invoice_id: int, *, method: str) -> Response:
    db = get_session()
    invoice = db.get(Invoice, invoice_id) or abort(404)
    if invoice.status == "paid":
        return done(f"{invoice.number} is already paid.", "info")
    invoice.status, invoice.paid_at = "paid", datetime.now(UTC)
    event_id = emit(
        db,
        "payment_success",
        recipients=[invoice.client_id],
        data={"amount": f"{invoice.amount:.2f}", "currency": invoice.currency,
              "invoice_number": invoice.number, "method": method},
        key=f"invoice:{invoice.id}",
        idempotency_key=f"invoice:{invoice.id}:paid",
        initiator=INITIATOR,
    )
    db.commit()
    return emitted(f"{invoice.number} paid ({method}).", event_id)


@bp.post("/groups/<int:group_id>/announce")
def announce(group_id: int) -> Response:
    db = get_session()
    group = db.get(Group, group_id) or abort(404)
    form = AnnounceForm()
    if not form.validate():
        problems = "; ".join(f"{name}: {', '.join(errors)}" for name, errors in form.errors.items())
        return done(f"Not sent: {problems}", "error")
    event_id = emit(
        db,
        "mass_broadcast",
        recipients=group.client_ids,
        # The template and its own data; "service" reaches everyone who allows service messages.
        data={"template_code": "ANNOUNCEMENT", "category": "service",
              "title": f"{group.title}: {form.title.data}", "text": form.text.data},
        initiator=INITIATOR,
    )
    db.commit()
    return emitted(f"Announcement to {group.title} queued.", event_id)


def emitted(message: str, event_id: int | None) -> Response:
    if event_id is None:  # emit found the idempotency key: a double click
        return done(message + " The event had been emitted already: nothing new is sent.", "info")
    return done(message + f" Outbox event #{event_id} is on its way.")


def done(message: str, category: str = "success") -> Response:
    """Post/redirect/get: a reload never repeats the transaction."""
    flash(message, category)
    return redirect(url_for("democrm.index"))
