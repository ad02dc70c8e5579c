"""Broadcasts in the admin: create, count, preview, test, send, watch, pause, cancel.

Mistakes here reach thousands of people, so the screens slow the admin down
where it matters: the exact numbers per channel are shown before anything
starts, the full send needs the number of messages typed in, a preview is
rendered for a real client of the selection, and the test stage comes first.
The support role sees everything and can start nothing.

The pages only change rows (``workers/broadcasts.py``); the scheduler's tick
picks a started broadcast up within a second and the workers send it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

from flask import abort, flash, jsonify, redirect, request, url_for
from flask_admin import expose
from flask_babel import format_date
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from sqlalchemy import String, cast, func, select
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    widgets,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from vestnik.shared import client_ids
from vestnik.shared.attachment_refs import ATTACHMENT_KEY
from vestnik.shared.client_ids import client_keys
from vestnik.shared.composer import compose, find_template
from vestnik.shared.errors import TemplateError
from vestnik.shared.models import AuditLog, Broadcast, Client, ClientGroup, Notification, NotificationTemplate, utcnow
from vestnik.shared.targeting import parse_client_ids
from vestnik.webapp.admin.base import SecureView, audit, can_write, duration, status_name
from vestnik.webapp.db import get_session
from vestnik.workers import broadcast_eta, broadcast_resend, broadcast_schedule, broadcasts, reports
from vestnik.workers.audience import channels_for, sample
from vestnik.workers.channels import CHANNELS
from vestnik.workers.quiet_hours import hhmm


class _Checkboxes(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


def _json_object(form: FlaskForm, field: TextAreaField) -> None:
    try:
        value = json.loads(field.data or "{}")
    except json.JSONDecodeError as exc:
        raise ValidationError(f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise ValidationError("not valid JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise ValidationError('must be a JSON object, e.g. {"title": "...", "text": "..."}')


def _at_least_one(form: FlaskForm, field: SelectMultipleField) -> None:
    if not field.data:
        raise ValidationError(_("choose at least one channel"))


def count_sentence(count: Any) -> str:
    """``workers.audience.Count.sentence`` in the admin's language."""
    parts = ", ".join(f"{n:,} {CHANNELS[ch].noun if ch in CHANNELS else ch}" for ch, n in count.by_channel.items() if n)
    said = _("You will send %(messages)s messages to %(clients)s clients", messages=f"{count.messages:,}",
             clients=f"{count.clients:,}")
    return said + (f": {parts}" if parts else "")


def when_text(when: Any) -> str:
    """``workers.broadcast_schedule.When.describe`` in the admin's language."""
    if when is None:
        return ""
    if when.moment is not None:
        return _("at %(moment)s UTC", moment=f"{when.moment:%Y-%m-%d %H:%M}")
    return _("at %(time)s on %(day)s in each client's time zone", time=hhmm(when.local_time_min or 0),
             day=f"{when.local_date:%Y-%m-%d}")


def targeting_text(t: Any) -> str:
    """``shared.targeting.Targeting.describe`` in the admin's language."""
    parts = []
    if t.groups:
        parts.append(_("groups: %(names)s", names=", ".join(t.groups)))
    if t.tags:
        parts.append(_("all tags: %(names)s", names=", ".join(t.tags)) if t.all_tags
                      else _("any tag: %(names)s", names=", ".join(t.tags)))
    if t.locales:
        parts.append(_("locale: %(names)s", names=", ".join(t.locales)))
    if t.has_telegram:
        parts.append(_("has Telegram"))
    if t.has_email:
        parts.append(_("has email"))
    if t.active_since:
        parts.append(_("active since %(day)s", day=t.active_since.date().isoformat()))
    if t.client_list:
        parts.append(_("uploaded list of clients"))
    return "; ".join(parts) or _("all clients")


_DECIDED = (
    (re.compile(r"(?P<channel>\S+) limit (?P<n>[\d,]+) a second"), _l("%(channel)s limit %(n)s a second")),
    (re.compile(r"(?P<channel>\S+) limit (?P<n>[\d,]+) a minute"), _l("%(channel)s limit %(n)s a minute")),
    (re.compile(r"(?P<channel>\S+) limit (?P<n>[\d,]+) an hour"), _l("%(channel)s limit %(n)s an hour")),
    (re.compile(r"(?P<channel>\S+) limit (?P<n>[\d,]+) a day"), _l("%(channel)s limit %(n)s a day")),
    (re.compile(r"(?P<channel>\S+) measured rate"), _l("%(channel)s measured rate")),
    (re.compile(r"(?P<channel>\S+): quiet hours"), _l("%(channel)s: quiet hours")),
    (re.compile(r"(?P<channel>\S+): a later time zone's wave"), _l("%(channel)s: a later time zone's wave")),
)


def decided_text(words: str) -> str:
    """What a broadcast's end depends on (``workers.broadcast_eta``), in the admin's language."""
    for pattern, said in _DECIDED:
        m = pattern.fullmatch(words or "")
        if m:
            return str(said) % m.groupdict()
    return words


class BroadcastForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    template_code = SelectField(_l("Template"), validators=[DataRequired()])
    # Not DataRequired: it would put `required` on every checkbox, and the browser would demand all of them.
    channels = _Checkboxes(_l("Channels"), validators=[_at_least_one])
    category = SelectField(_l("Category"), choices=[("service", _l("service (everyone who allows service messages)")),
                                                ("marketing", _l("marketing (only clients who opted in)"))])
    template_data = TextAreaField(_l("Template data (JSON)"), default='{"title": "", "text": ""}',
                                  validators=[_json_object])
    attachment = StringField(_l("Attachment"), validators=[Optional(), Length(max=2000)])
    groups = SelectMultipleField(_l("Groups / classes (any of)"), validators=[Optional()])
    tags = StringField(_l("Tags (separated by ;)"), validators=[Optional(), Length(max=2000)])
    all_tags = BooleanField(_l("Client must have every tag"))
    locales = StringField(_l("Locales (e.g. ru;en)"), validators=[Optional(), Length(max=200)])
    has_telegram = BooleanField(_l("Has Telegram"))
    has_email = BooleanField(_l("Has email"))
    active_since = DateField(_l("Active since"), validators=[Optional()])
    client_ids = TextAreaField(_l("Only these client ids (one per line or comma-separated)"), validators=[Optional()])
    client_file = FileField(_l("…or upload a CSV whose first column is the client id"))
    mode = SelectField(_l("Rollout"), choices=[
        ("manual", _l("manual: send test, look, then send to everyone")),
        ("auto", _l("automatic: test stage, wait, continue while failures stay low"))])
    test_size = IntegerField(_l("Test stage: first N clients"), default=10, validators=[InputRequired(),
                                                                                   NumberRange(1, 10_000)])
    test_group = SelectField(_l("…or this test group"), validators=[Optional()])
    stage_wait_s = IntegerField(_l("Automatic: wait after the test (seconds)"), default=60,
                                validators=[InputRequired(), NumberRange(0, 86_400)])
    max_failure_pct = IntegerField(_l("Pause itself when more than this many percent fail"), default=20,
                                   validators=[InputRequired(), NumberRange(1, 100)])


class ScheduleForm(FlaskForm):
    """When a broadcast goes: a moment (UTC), or a time of day on a date in each client's own zone."""

    kind = SelectField(_l("Send"), choices=[("local", _l("at a local time in each client's time zone")),
                                        ("moment", _l("at one moment (UTC)"))], default="local")
    local_date = DateField(_l("Date"), validators=[Optional()])
    local_time = StringField(_l("Local time (HH:MM)"), default="10:00", validators=[Optional(), Length(max=5)])
    moment = DateTimeLocalField(_l("Moment (UTC)"), format="%Y-%m-%dT%H:%M", validators=[Optional()])
    typed = StringField(_l("Type the number of messages to confirm"), validators=[Optional(), Length(max=20)])

    def when(self) -> broadcast_schedule.When:
        if self.kind.data == "moment":
            if self.moment.data is None:
                raise broadcasts.BroadcastError("moment: choose a date and a time (UTC)")
            return broadcast_schedule.When.at(self.moment.data.replace(tzinfo=UTC))
        if self.local_date.data is None:
            raise broadcasts.BroadcastError("date: choose the day")
        return broadcast_schedule.When.local(self.local_date.data, (self.local_time.data or "").strip())


class TextForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    template_data = TextAreaField(_l("Template data (JSON)"), validators=[_json_object])


class ConfirmForm(FlaskForm):
    typed = StringField(_l("Type the number of messages to confirm"), validators=[DataRequired()])


class ActionForm(FlaskForm):
    pass


def _with_attachment(data: dict[str, Any], attachment: str | None) -> dict[str, Any]:
    """The template data with the form's attachment (``data.attachment``: workers/attachments.py)."""
    if (attachment or "").strip():
        return {**data, ATTACHMENT_KEY: attachment.strip()}
    return data


def _actor() -> str:
    return current_user.actor


def _require_write() -> None:
    if not can_write():
        abort(403)


def _type_the_count(form: FlaskForm) -> str:
    return _("Type the number of messages to confirm.")


def _form_errors(form: FlaskForm) -> str:
    return "; ".join(f"{getattr(form, k).label.text}: {', '.join(v)}" for k, v in form.errors.items())


class BroadcastView(SecureView):
    """Flask-Admin view at /admin/broadcasts/."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(name=_l("Broadcasts"), endpoint="broadcasts", url="/admin/broadcasts", **kwargs)

    # ------------------------------------------------------------ list and create

    @expose("/")
    def index(self):
        db = get_session()
        rows = db.scalars(select(Broadcast).order_by(Broadcast.id.desc()).limit(100)).all()
        planned = db.scalars(select(Broadcast).where(Broadcast.status == "scheduled")
                             .order_by(Broadcast.scheduled_at, Broadcast.id)).all()
        by_day: dict[str, list[tuple[Broadcast, str]]] = {}
        for b in planned:
            when = broadcast_schedule.when_of(b)
            day = f"{b.scheduled_at:%Y-%m-%d} ({format_date(b.scheduled_at, 'EEEE')})"
            by_day.setdefault(day, []).append((b, when_text(when)))
        return self.render("admin/broadcasts/list.html", rows=rows, planned=by_day,
                           progress={b.id: broadcasts.progress(db, b) for b in rows}, can_write=can_write())

    def _form(self) -> BroadcastForm:
        db = get_session()
        form = BroadcastForm()
        codes = db.scalars(select(NotificationTemplate.code).distinct().where(
            NotificationTemplate.is_active.is_(True)).order_by(NotificationTemplate.code)).all()
        form.template_code.choices = [(c, c) for c in codes]
        form.channels.choices = [(c, c) for c, cls in sorted(CHANNELS.items()) if cls.address_field]
        groups = db.scalars(select(ClientGroup.name).distinct().order_by(ClientGroup.name)).all()
        form.groups.choices = [(g, g) for g in groups]
        form.test_group.choices = [("", _("— none: the first N clients —"))] + [(g, g) for g in groups]
        if request.method == "GET":
            form.channels.data = form.channels.data or [c for c, _ in form.channels.choices]
        return form

    @expose("/new", methods=("GET", "POST"))
    def create(self):
        _require_write()
        form = self._form()
        if form.validate_on_submit():
            try:
                ids = None
                upload = form.client_file.data
                if upload and getattr(upload, "filename", ""):
                    ids = parse_client_ids(upload.read().decode("utf-8-sig", errors="replace"))
                elif (form.client_ids.data or "").strip():
                    ids = parse_client_ids(form.client_ids.data.replace(",", "\n"))
                if ids is not None and not ids:
                    raise broadcasts.BroadcastError("the uploaded list has no client ids")
                unknown: list[Any] = []
                if ids is not None:  # the CRM's ids (42, a UUID) to clients; an unknown string id names no row
                    ids, unknown = client_keys(ids, get_session())
                    unknown = [u for u in unknown if isinstance(u, str)]
                    if not ids:
                        raise broadcasts.BroadcastError(f"no uploaded id names a client ({', '.join(unknown[:5])}"
                                                        f"{', ...' if len(unknown) > 5 else ''})")
                b = broadcasts.create(
                    get_session(), name=form.name.data, template_code=form.template_code.data,
                    channels=form.channels.data, category=form.category.data,
                    targeting={"groups": form.groups.data or [], "tags": form.tags.data or "",
                               "all_tags": form.all_tags.data, "locales": form.locales.data or "",
                               "has_telegram": form.has_telegram.data, "has_email": form.has_email.data,
                               "active_since": form.active_since.data.isoformat() if form.active_since.data
                               else None},
                    initiator=_actor(), data=_with_attachment(json.loads(form.template_data.data or "{}"),
                                                              form.attachment.data), client_ids=ids,
                    mode=form.mode.data, test_size=form.test_size.data, test_group=form.test_group.data or None,
                    stage_wait_s=form.stage_wait_s.data, max_failure_rate=form.max_failure_pct.data / 100,
                )
            except (broadcasts.BroadcastError, ValueError) as exc:
                flash(_("Not created: %(error)s", error=exc), "error")
            else:
                get_session().add(AuditLog(actor=_actor(), action="broadcast.create", object_type="broadcast",
                                           object_id=str(b.id), details={"name": b.name, "status": b.status}))
                get_session().commit()
                if unknown:  # unknown integer ids are counted on the page; unknown string ids are said here
                    flash(_("%(n)s uploaded ids name no client", n=len(unknown)), "warning")
                return redirect(url_for(".details", broadcast_id=b.id))
        return self.render("admin/broadcasts/new.html", form=form)

    # ------------------------------------------------------------ one broadcast

    def _get(self, broadcast_id: int) -> Broadcast:
        return get_session().get(Broadcast, broadcast_id) or abort(404)

    @expose("/<int:broadcast_id>")
    def details(self, broadcast_id: int):
        db = get_session()
        b = self._get(broadcast_id)
        whole = test = None
        if b.status in ("draft", "testing"):
            whole, test = broadcasts.counts(db, b)
        sel = broadcasts.selection(b, stage="all")
        picks = sample(db, sel, limit=20)
        typed = (request.args.get("client") or "").strip()  # the CRM's id (42 or a UUID)
        chosen = (client_ids.resolve(db, typed) if client_ids.valid(typed) else None) or (
            picks[0][0] if picks else None)
        shown = client_ids.crm_ids(db, [cid for cid, _ in picks])
        preview, preview_error = self._preview(b, chosen) if chosen else ([], None)
        audit = db.scalars(select(AuditLog).where(AuditLog.object_type == "broadcast",
                                                  AuditLog.object_id == str(b.id)).order_by(AuditLog.id)).all()
        resend = broadcast_resend.count(db, b) if broadcast_resend.why_not(b) is None else None
        report = reports.report(db, "broadcast", b.created_at - timedelta(seconds=1), utcnow() + timedelta(seconds=1),
                                key=b.id)
        return self.render(
            "admin/broadcasts/details.html", b=b, whole=whole, test=test, picks=picks, chosen=chosen,
            preview=preview, preview_error=preview_error, shown=shown, progress=broadcasts.progress(db, b), audit=audit,
            eta=self._estimate(b), resend=resend, count_sentence=count_sentence, when_text=when_text,
            report=report[0] if report else None,
            schedule=ScheduleForm(prefix="s"), text_form=TextForm(prefix="t", name=b.name,
                                                                  template_data=json.dumps(b.data or {},
                                                                                           ensure_ascii=False)),
            waves=broadcast_schedule.waves(db, b.id) if b.status == "scheduled" else [],
            when=broadcast_schedule.when_of(b),
            unknown=broadcasts.unknown_listed(db, b) if b.targeting.get("client_list") else 0,
            describe=targeting_text(broadcasts.Targeting.parse(b.targeting)), confirm=ConfirmForm(),
            action=ActionForm(), can_write=can_write(),
        )

    def _preview(self, b: Broadcast, client_id: int) -> tuple[list[dict[str, Any]], str | None]:
        """The message each channel would carry for this client, rendered exactly as delivery renders it."""
        from vestnik.webapp import get_settings

        db = get_session()
        client = db.get(Client, client_id)
        if client is None:
            return [], f"client #{request.args.get('client', client_id)} does not exist"
        channels = channels_for(db, broadcasts.selection(b, stage="all"), client_id)
        if not channels:
            return [], f"{client} is not in this selection (or gets no channel): nothing would be sent"
        out = []
        settings = get_settings()
        for ch in channels:
            try:
                template = find_template(db, b.template_code, ch, client.locale, settings.default_locale,
                                         settings.fallback)
                from vestnik.shared.unsubscribe import marketing_extras

                headers, buttons = marketing_extras(settings, b.category, CHANNELS[ch], client.id, client.locale)
                msg = compose(template, form=CHANNELS[ch], event_type=broadcasts.EVENT_TYPE, data=b.data or {},
                              client=client, headers=headers, buttons=buttons, default_zone=settings.default_timezone)
                # Telegram HTML (the allowed subset) shown as the app shows it: lines kept, tags applied.
                srcdoc = msg.html or f'<div style="white-space: pre-wrap; font-family: sans-serif">{msg.text}</div>'
                out.append({"channel": ch, "subject": msg.subject, "text": msg.text, "html": msg.html,
                            "srcdoc": srcdoc, "headers": msg.headers,
                            "buttons": [x.text for row in msg.buttons for x in row]})
            except TemplateError as exc:
                out.append({"channel": ch, "error": str(exc)})
        return out, None

    def _estimate(self, b: Broadcast) -> dict[str, Any]:
        from vestnik.webapp import get_settings

        est = broadcast_eta.estimate(get_session(), b, get_settings()).to_json()
        # The words of the progress lines in the admin's language, for the page and its refreshes.
        est["ends_in"] = duration(est["seconds_left"])
        est["decided_by"] = decided_text(est["decided_by"])
        for c in est["channels"]:
            c["ends_in"] = duration(c["seconds_left"])
            parts = [_("%(n)s sent", n=c["sent"]), _("%(n)s failed", n=c["failed"])
                     + (f' ({_("%(n)s resent", n=c["resent"])})' if c["resent"] else ""),
                     _("%(n)s waiting", n=c["waiting"])]
            if c["canceled"]:
                parts.append(_("%(n)s canceled", n=c["canceled"]))
            if c["rate_per_min"] is not None:
                parts.append(_("%(n)s a minute", n=c["rate_per_min"]))
            if c["seconds_left"] is not None:
                parts.append(_("ends in %(when)s", when=c["ends_in"]))
            c["text"] = " · ".join(parts)
            c["label"] = _("%(channel)s: %(sent)s sent, %(failed)s failed, %(waiting)s waiting of %(total)s",
                           channel=c["channel"], sent=c["sent"], failed=c["failed"], waiting=c["waiting"],
                           total=c["total"])
        return est

    @expose("/<int:broadcast_id>/progress.json")
    def progress_json(self, broadcast_id: int):
        b = self._get(broadcast_id)
        progress = broadcasts.progress(get_session(), b).to_json()
        status_text = status_name(progress["status"]) + (
            f' ({_("%(stage)s stage", stage=progress["stage"])})' if progress.get("stage") else "")
        return jsonify({**progress, "status_text": status_text, "estimate": self._estimate(b)})

    @expose("/<int:broadcast_id>/failed.csv")
    def failed_csv(self, broadcast_id: int):
        """The broadcast's failed recipients, streamed (``webapp/admin/export.py``)."""
        from vestnik.webapp.admin.export import csv_response, stream_select

        b = self._get(broadcast_id)
        shown_id = func.coalesce(Client.crm_id, cast(Notification.recipient_id, String))  # the CRM's id
        stmt = (select(shown_id, Client.name, Notification.channel, Notification.recipient_address,
                       Notification.last_error, Notification.delivery_uncertain, Notification.attempts,
                       Notification.step, Notification.updated_at, Notification.id)
                .outerjoin(Client, Client.id == Notification.recipient_id)
                .where(Notification.broadcast_id == b.id, Notification.status == "failed")
                .order_by(Notification.id))
        audit("broadcast.export_failed", "broadcast", b.id)
        get_session().commit()
        return csv_response(f"broadcast-{b.id}-failed.csv",
                            ["client_id", "client_name", "channel", "address", "reason", "delivery_uncertain",
                             "attempts", "round", "failed_at_utc", "notification_id"],
                            stream_select(get_session(), stmt))

    @expose("/<int:broadcast_id>/resend-failed", methods=("POST",))
    def resend_failed(self, broadcast_id: int):
        """Resend only failed (``workers/broadcast_resend.py``): the admin typed the exact count."""
        form = ConfirmForm()

        def do(db, b):
            done = broadcast_resend.resend_failed(db, b, _actor(), form.typed.data)
            return _("Resending %(n)s failed messages (round %(round)s).", n=f"{done.count.messages:,}",
                     round=done.round)
        return self._act(broadcast_id, do, form, invalid=_type_the_count,
                         refused=lambda exc: _("Not resent: %(error)s", error=exc))

    def _act(self, broadcast_id: int, do: Callable[[Any, Broadcast], str], form: FlaskForm | None = None, *,
             invalid: Callable[[FlaskForm], str] | None = None,
             refused: Callable[[broadcasts.BroadcastError], str] = str) -> Any:
        """Every action on one broadcast: check the form (``invalid`` says why, or 400), lock the row, run
        ``do`` (its message flashed) and commit, or roll back and flash ``refused``; back to its page."""
        _require_write()
        form = form if form is not None else ActionForm()
        back = redirect(url_for(".details", broadcast_id=broadcast_id))
        if not form.validate_on_submit():
            if invalid is None:
                abort(400)
            flash(invalid(form), "error")
            return back
        db = get_session()
        b = broadcasts.lock(db, broadcast_id) or abort(404)
        try:
            message = do(db, b)
        except broadcasts.BroadcastError as exc:
            db.rollback()
            flash(refused(exc), "error")
        else:
            db.commit()
            flash(message, "success")
        return back

    @expose("/<int:broadcast_id>/test", methods=("POST",))
    def send_test(self, broadcast_id: int):
        def do(db, b):
            broadcasts.send_test(db, b, _actor())
            return _("The test stage is being sent.")
        return self._act(broadcast_id, do)

    @expose("/<int:broadcast_id>/start", methods=("POST",))
    def start(self, broadcast_id: int):
        form = ConfirmForm()

        def do(db, b):
            return _("Started: %(what)s.", what=count_sentence(broadcasts.send_all(db, b, _actor(), form.typed.data)))
        return self._act(broadcast_id, do, form, invalid=_type_the_count)

    @expose("/<int:broadcast_id>/schedule", methods=("POST",))
    def schedule(self, broadcast_id: int):
        """Schedule (with the typed count) or, when scheduled already, move it."""
        from vestnik.webapp import get_settings

        form = ScheduleForm(prefix="s")

        def do(db, b):
            zone = get_settings().default_timezone
            when = form.when()
            if b.status == "scheduled":
                broadcast_schedule.reschedule(db, b, _actor(), when, default_zone=zone)
                return _("Moved: %(when)s.", when=when_text(when))
            whole = broadcast_schedule.schedule(db, b, _actor(), form.typed.data or "", when, default_zone=zone)
            return _("Scheduled %(when)s: %(what)s.", when=when_text(when), what=count_sentence(whole))

        def refused(error):
            return _("Not scheduled: %(error)s", error=error)
        return self._act(broadcast_id, do, form, invalid=lambda f: refused(_form_errors(f)), refused=refused)

    @expose("/<int:broadcast_id>/unschedule", methods=("POST",))
    def unschedule(self, broadcast_id: int):
        def do(db, b):
            broadcast_schedule.unschedule(db, b, _actor())
            return _("Unscheduled: it is a draft again; nothing was sent.")
        return self._act(broadcast_id, do)

    @expose("/<int:broadcast_id>/text", methods=("POST",))
    def edit_text(self, broadcast_id: int):
        form = TextForm(prefix="t")

        def do(db, b):
            broadcasts.update_text(db, b, _actor(), name=form.name.data, data=json.loads(form.template_data.data))
            return _("Saved.")

        def refused(error):
            return _("Not saved: %(error)s", error=error)
        return self._act(broadcast_id, do, form, invalid=lambda f: refused(_form_errors(f)), refused=refused)

    @expose("/<int:broadcast_id>/pause", methods=("POST",))
    def pause(self, broadcast_id: int):
        def do(db, b):
            broadcasts.pause(db, b, _actor())
            return _("Paused: nothing more is handed to delivery; "
                     "the few seconds' worth already in flight still go out.")
        return self._act(broadcast_id, do)

    @expose("/<int:broadcast_id>/resume", methods=("POST",))
    def resume(self, broadcast_id: int):
        def do(db, b):
            broadcasts.resume(db, b, _actor())
            return _("Resumed.")
        return self._act(broadcast_id, do)

    @expose("/<int:broadcast_id>/cancel", methods=("POST",))
    def cancel(self, broadcast_id: int):
        def do(db, b):
            n = broadcasts.cancel(db, b, _actor())
            return _("Canceled: %(n)s messages not sent yet were canceled.", n=f"{n:,}")
        return self._act(broadcast_id, do)
