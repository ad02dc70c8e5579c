"""The admin's model views: history, templates, clients, outbox events, audit."""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

from flask import abort, flash, jsonify, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla import filters as sqla_filters
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import false, select
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import ValidationError

from vestnik.shared import bounds, client_ids, locales
from vestnik.shared.addresses import check as check_address
from vestnik.shared.attachment_refs import SOURCE_NAMES
from vestnik.shared.bounds import BoundsError
from vestnik.shared.composer import missing_translations
from vestnik.shared.models import (
    AdminUser,
    Chat,
    Client,
    DeliveryAttempt,
    Notification,
    NotificationReaction,
    NotificationStatus,
    NotificationTemplate,
    TemplateVersion,
    utcnow,
)
from vestnik.webapp.admin.base import STATUS_NAMES, SecureModelView, audit, can_write, code_cell, status_name
from vestnik.webapp.admin.template_editor import (
    Draft,
    TestSendRefused,
    admin_address,
    button_problems,
    preview,
    send_test,
    variables_catalogue,
)
from vestnik.webapp.db import get_session
from vestnik.workers import notifications
from vestnik.workers.channels import CHANNELS
from vestnik.workers.template_checks import check_template

# ------------------------------------------------------------------ filters


class _Aware:
    """Flask-Admin parses naive datetimes; the admin enters UTC (shown in the label)."""

    def clean(self, value: Any) -> Any:
        cleaned = super().clean(value)  # type: ignore[misc]
        if isinstance(cleaned, list):
            return [v.replace(tzinfo=UTC) for v in cleaned]
        return cleaned.replace(tzinfo=UTC)


class AwareBetween(_Aware, sqla_filters.DateTimeBetweenFilter):
    pass


class AwareAfter(_Aware, sqla_filters.DateTimeGreaterFilter):
    pass


class AwareBefore(_Aware, sqla_filters.DateTimeSmallerFilter):
    pass


def _choices(values: list[str]) -> list[tuple[str, str]]:
    return [(v, v) for v in values]


class InitiatorFilter(sqla_filters.BaseSQLAFilter):
    """system, or admin (any admin), or an exact initiator such as admin:3."""

    def apply(self, query, value, alias=None):
        column = self.get_column(alias)
        if value == "admin":
            # "<> 'system'" lets PostgreSQL use the partial index ix_notifications_by_admin.
            return query.filter(column != "system", column.like("admin:%"))
        return query.filter(column == value)

    def operation(self) -> str:
        return "is"


class ClientIdFilter(sqla_filters.BaseSQLAFilter):
    """One client's notifications, named by the CRM's id (42 or a UUID: shared/client_ids.py); served by the
    index on (recipient_id, created_at)."""

    def validate(self, value: Any) -> bool:
        return client_ids.valid(str(value).strip())

    def apply(self, query, value, alias=None):
        key = client_ids.resolve(get_session(), str(value).strip())
        return query.filter(self.get_column(alias) == key) if key is not None else query.filter(false())

    def operation(self) -> str:
        return "equals"


class ChatFilter(sqla_filters.BaseSQLAFilter):
    """Posts to one group or channel (no client, that address): served by the partial index
    ix_notifications_chat_posts (migration 0021), so it stays fast on millions of rows."""

    def apply(self, query, value, alias=None):
        return query.filter(Notification.recipient_id.is_(None), self.get_column(alias) == str(value).strip())

    def operation(self) -> str:
        return "equals"


# ------------------------------------------------------------------ formatters


def _short(text: str | None, limit: int = 90) -> str:
    plain = re.sub(r"<[^>]+>", " ", text or "")
    plain = re.sub(r"\s+", " ", plain).strip()
    return plain if len(plain) <= limit else plain[: limit - 1] + "…"


def _client_link(view, context, model, name) -> Markup:
    if model.recipient_id is None:  # a post to a group or channel, or an admin's test send
        chat = _chats_of_page().get((model.channel, model.recipient_address))
        if chat is not None:
            return Markup('<a href="{}" title="{}">{}</a>').format(
                url_for("chats.index", _anchor=f"chat-{chat.id}"), model.recipient_address, chat.title)
        return Markup('<span class="text-muted" title="{}">{}</span>').format(gettext("test send"),
                                                                           model.recipient_address)
    client = model.recipient
    label = f"{client.name} (#{client.crm_id})" if client else f"#{client_ids.shown(model.recipient_id)}"
    return Markup('<a href="{}">{}</a>').format(url_for("client.details_view", id=model.recipient_id), label)


def _chats_of_page() -> dict[tuple[str, str], Any]:
    """The registered chats (a handful), read once a request for the history's recipient cells."""
    from flask import g

    if "vestnik_chats" not in g:
        g.vestnik_chats = {(c.channel, c.address): c for c in get_session().scalars(select(Chat))}
    return g.vestnik_chats


def _text_cell(view, context, model, name) -> Markup:
    if not model.body:
        return Markup('<span class="text-muted">—</span>')
    return Markup('{} <a href="{}" title="{}">↗</a>').format(
        _short(model.body), url_for("notification.details_view", id=model.id), gettext("full text"))


def describe_attachment(about: dict[str, Any] | None) -> str:
    """What a notification carried, in words: "INV-7.pdf (application/pdf, 3 KB) from a URL: https://..."."""
    if not about:
        return ""
    size = about.get("bytes")
    facts = ", ".join(x for x in (about.get("type"), f"{max(1, size // 1024)} KB" if size else None) if x)
    source = SOURCE_NAMES.get(about.get("source"), "?")
    return f"{about.get('name') or 'a file'}{f' ({facts})' if facts else ''} from {source}: {about.get('ref', '')}"


def _attachment_cell(view, context, model, name) -> Markup:
    text = describe_attachment(model.attachment)
    return Markup('<span title="{}">📎 {}</span>').format(text, model.attachment.get("name") or "file") if text \
        else Markup("")


def _status_cell(view, context, model, name) -> Markup:
    badge = {"sent": "success", "failed": "danger", "canceled": "secondary", "processing": "info"}.get(
        model.status, "warning")
    out = Markup('<span class="badge badge-{}">{}</span>').format(badge, status_name(model.status))
    if model.delivery_uncertain:
        out += Markup(' <span class="badge badge-dark" title="{}">{}</span>').format(
            gettext("the provider may have accepted it"), gettext("uncertain"))
    if model.last_error:
        out += Markup(' <a href="{}" title="{}">⚠</a>').format(
            url_for("notification.details_view", id=model.id), _short(model.last_error, 200))
    return out


def _full_text(view, context, model, name) -> Markup:
    return Markup('<pre class="vestnik-pre">{}</pre>').format(getattr(model, name) or "")


def _attempts(view, context, model, name) -> Markup:
    rows = get_session().scalars(
        select(DeliveryAttempt).where(DeliveryAttempt.notification_id == model.id).order_by(DeliveryAttempt.id)
    ).all()
    if not rows:
        return Markup("—")
    body = Markup("").join(
        Markup("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>").format(
            a.attempt_no, a.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            status_name(a.outcome) if a.outcome else gettext("in flight"), a.external_id or "", a.error or "")
        for a in rows
    )
    return Markup('<table class="table table-sm"><tr><th>#</th><th>{}</th><th>{}</th>'
                  "<th>{}</th><th>{}</th></tr>{}</table>").format(
        gettext("started (UTC)"), gettext("outcome"), gettext("provider id"), gettext("error"), body)


def _reactions(view, context, model, name) -> Markup:
    """Who pressed which button on this message (once per person) and unsubscribes it led to."""
    rows = get_session().scalars(select(NotificationReaction).where(NotificationReaction.notification_id == model.id)
                                 .order_by(NotificationReaction.id).limit(200)).all()
    if not rows:
        return Markup("—")
    body = Markup("").join(
        Markup("<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>").format(
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"), r.kind, r.value or "", r.actor or "")
        for r in rows)
    return Markup('<table class="table table-sm reactions"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>'
                  "{}</table>").format(gettext("at (UTC)"), gettext("kind"), gettext("button"), gettext("who"), body)


def _origin(view, context, model, name) -> Markup:
    parts = []
    if model.event_id:
        parts.append(Markup('{} <a href="{}">#{}</a>').format(gettext("event"),
            url_for("outboxevent.details_view", id=model.event_id), model.event_id))
    if model.broadcast_id:
        parts.append(Markup('{} <a href="{}">#{}</a>').format(gettext("broadcast"),
            url_for("broadcasts.details", broadcast_id=model.broadcast_id), model.broadcast_id))
    if model.key:
        parts.append(Markup('{} <a href="{}">{}</a>').format(gettext("key"),
            url_for("notification.index_view", flt0_key_equals=model.key), model.key))
    return Markup(", ").join(parts) if parts else Markup("—")


# ------------------------------------------------------------------ history


def _ids(raw: list[str]) -> list[int]:
    """The row ids an action was given (Flask-Admin's ``rowid`` fields), each a bounded id."""
    if len(raw) > MAX_ACTION_ROWS:
        raise BoundsError("rowid", f"at most {MAX_ACTION_ROWS} rows at once")
    return [bounds.identifier(i, "rowid") for i in raw]


#: rows one action may change (a page holds 20-100; more is not a click)
MAX_ACTION_ROWS = 1000


class NotificationView(SecureModelView):
    """Notification history: fast on millions of rows (indexed filters, no COUNT)."""

    column_list = ("created_at", "sent_at", "recipient_id", "channel", "status", "event_type", "body", "attachment",
                   "initiator")
    column_labels = {"recipient_id": _l("Client"), "body": _l("Text"), "attachment": _l("Attached"),
                     "created_at": _l("Created (UTC)"),
                     "sent_at": _l("Sent (UTC)"), "send_at": _l("Send at (UTC)"), "updated_at": _l("Updated (UTC)"),
                     "attempts_log": _l("Delivery attempts"), "attempts": _l("Attempts made"),
                     "reactions": _l("Buttons pressed")}
    # created_at, not id: every filter's index ends in created_at (ids are not commit order anyway)
    column_default_sort = ("created_at", True)
    # Only orders an index serves: sorting 2,000,000 rows by sent_at or channel takes seconds (filter instead).
    column_sortable_list = ("created_at", "status")
    column_formatters = {"recipient_id": _client_link, "body": _text_cell, "status": _status_cell,
                         "initiator": code_cell, "attachment": _attachment_cell}
    column_details_list = (
        "id", "status", "delivery_uncertain", "channel", "recipient_id", "recipient_address", "event_type",
        "template_code", "step", "locale", "category", "initiator", "origin", "subject", "body", "attachment",
        "attempts", "last_error", "external_id", "created_at", "send_at", "sent_at", "updated_at", "attempts_log",
        "reactions",
    )
    column_formatters_detail = {
        "recipient_id": _client_link, "subject": _full_text, "body": _full_text, "last_error": _full_text,
        "attempts_log": _attempts, "origin": _origin, "status": _status_cell, "category": code_cell,
        "initiator": code_cell, "reactions": _reactions,
        "attachment": lambda view, context, model, name: describe_attachment(model.attachment) or "—",
    }

    # The history's "Export" link: the rows of the filters shown, every one of them, streamed.
    can_export = True
    export_types = ["csv"]
    #: (header, column) of the export
    export_sql_columns = (
        ("id", Notification.id), ("created_at_utc", Notification.created_at), ("sent_at_utc", Notification.sent_at),
        ("status", Notification.status), ("channel", Notification.channel),
        ("client_id", client_ids.shown_column(Notification.recipient_id)),  # the CRM's id, never a row key
        ("address", Notification.recipient_address), ("event_type", Notification.event_type),
        ("template", Notification.template_code), ("broadcast_id", Notification.broadcast_id),
        ("initiator", Notification.initiator), ("attempts", Notification.attempts),
        ("delivery_uncertain", Notification.delivery_uncertain), ("last_error", Notification.last_error),
    )

    def _export_csv(self, return_url: Any):
        """Flask-Admin's export, streamed from a server-side cursor (``webapp/admin/export.py``)."""
        from vestnik.webapp.admin.export import csv_response, stream_query

        args = self._get_list_extra_args()
        sort = self._get_column_by_idx(args.sort)
        _, query = self.get_list(None, sort[0] if sort else None, args.sort_desc, args.search, args.filters,
                                 execute=False, page_size=0)
        if query == []:  # a filter value the database refused (flashed by get_list)
            return redirect(return_url)
        query = query.with_entities(*(c for _, c in self.export_sql_columns))
        audit("notification.export", "notification", None, {"filters": request.query_string.decode()[:500]})
        get_session().commit()
        return csv_response(f"history-{utcnow():%Y%m%d-%H%M%S}.csv", [h for h, _ in self.export_sql_columns],
                            stream_query(query))

    def __init__(self, **kwargs: Any) -> None:
        self.column_filters = [
            AwareBetween(Notification.created_at, _l("Created (UTC)")),
            AwareAfter(Notification.created_at, _l("Created (UTC)")),
            AwareBefore(Notification.created_at, _l("Created (UTC)")),
            ClientIdFilter(Notification.recipient_id, _l("Client id")),
            sqla_filters.FilterEqual(Notification.channel, _l("Channel"), options=_choices(sorted(CHANNELS))),
            sqla_filters.FilterEqual(Notification.status, _l("Status"),
                                     options=[(s.value, STATUS_NAMES[s.value]) for s in NotificationStatus]),
            sqla_filters.FilterEqual(Notification.event_type, _l("Event type")),
            InitiatorFilter(Notification.initiator, _l("Initiator"), options=[("system", _l("system")),
                                                                                ("admin", _l("any admin"))]),
            sqla_filters.FilterEqual(Notification.key, _l("Key")),
            sqla_filters.BooleanEqualFilter(Notification.delivery_uncertain, _l("Delivery uncertain")),
            sqla_filters.IntEqualFilter(Notification.broadcast_id, _l("Broadcast id")),
            ChatFilter(Notification.recipient_address, _l("Chat")),
        ]
        super().__init__(Notification, name=_l("History"), endpoint="notification", **kwargs)

    @action("resend", _l("Resend"), _l("Send a copy of the selected notifications again?"))
    def action_resend(self, ids: list[str]) -> None:
        db = get_session()
        now = utcnow()
        made, refused = 0, []
        for original in db.scalars(select(Notification).where(Notification.id.in_(_ids(ids)))):
            try:
                notifications.resend(db, original, initiator=self._actor(), now=now)
            except ValueError as exc:
                refused.append(f"#{original.id}: {exc}")
                continue
            audit("notification.resend", "notification", original.id)
            made += 1
        db.commit()
        flash(gettext("%(n)s notification(s) queued again.", n=made), "success")
        if refused:
            flash(gettext("Not re-sent: %(reasons)s", reasons="; ".join(refused)), "warning")

    @action("cancel", _l("Cancel"), _l("Cancel the selected pending notifications?"))
    def action_cancel(self, ids: list[str]) -> None:
        db = get_session()
        changed = notifications.cancel_selected(db, _ids(ids), f"canceled by {self._actor()}", utcnow())
        self._changed(ids, changed, "notification.cancel", NotificationStatus.pending)

    @action("retry", _l("Retry failed"), _l("Retry the selected failed notifications?"))
    def action_retry(self, ids: list[str]) -> None:
        db = get_session()
        changed = notifications.retry_failed(db, _ids(ids), utcnow())
        self._changed(ids, changed, "notification.retry", NotificationStatus.failed)

    def _changed(self, ids: list[str], changed: int, what: str, source: NotificationStatus) -> None:
        db = get_session()
        audit(what, "notification", ",".join(ids[:50]), {"changed": changed, "selected": len(ids)})
        db.commit()
        flash(gettext("%(changed)s of %(selected)s notification(s) changed; others were not %(status)s.",
                      changed=changed, selected=len(ids), status=status_name(source.value)), "success")

    @staticmethod
    def _actor() -> str:
        from flask_login import current_user

        return current_user.actor


# ------------------------------------------------------------------ templates


def _versions_link(view, context, model, name) -> Markup:
    return Markup('<a href="{}">{}</a>').format(url_for("template.versions_view", id=model.id),
                                                gettext("previous versions →"))


def _channel_choices() -> list[tuple[str, str]]:
    return _choices(sorted(CHANNELS))


def _translations(view, context, model, name) -> Markup:
    """The supported locales this code x channel has no active template in (computed once a request)."""
    from flask import g

    if "vestnik_missing_translations" not in g:
        g.vestnik_missing_translations = missing_translations(get_session())
    missing = g.vestnik_missing_translations.get((model.code, model.channel), ())
    if not missing:
        return Markup('<span class="translations-complete" title="{}">{}</span>').format(
            ", ".join(locales.SUPPORTED), gettext("complete"))
    return Markup('<span class="badge missing-translation" data-missing="{}" title="{}">{}</span>').format(
        " ".join(missing), gettext("clients in these locales get a fallback's text"),
        gettext("missing: %(locales)s", locales=", ".join(missing)))


class TemplateView(SecureModelView):
    allow_create = True
    allow_edit = True
    column_list = ("code", "channel", "locale", "name", "category", "is_active", "updated_at", "updated_by",
                   "translations")
    column_labels = {"code": _l("Code"), "channel": _l("Channel"), "locale": _l("Locale"), "name": _l("Name"),
                     "category": _l("Category"), "is_active": _l("Active"), "updated_at": _l("Updated"),
                     "updated_by": _l("Updated by"), "translations": _l("Translations"),
                     "description": _l("Description"), "subject": _l("Subject"), "body": _l("Body"),
                     "variables_schema": _l("Variables"), "created_at": _l("Created (UTC)"), "versions": _l("Versions")}
    column_formatters = {"translations": _translations, "category": code_cell}
    column_filters = ("code", "channel", "locale", "is_active", "category")
    column_searchable_list = ("code", "name")
    column_default_sort = ("code", False)
    form_columns = ("code", "channel", "locale", "category", "name", "description", "subject", "body", "buttons",
                    "is_active")
    form_overrides = {"channel": SelectField, "locale": SelectField, "category": SelectField, "body": TextAreaField,
                      "buttons": TextAreaField}
    form_args = {
        "channel": {"choices": _channel_choices},
        "locale": {"choices": [(code, code) for code in locales.SUPPORTED]},
        "category": {"choices": [("service", _l("service")), ("marketing", _l("marketing"))]},
        "buttons": {"label": _l("Telegram buttons"),
                    "description": _l("One row per line, buttons of a row separated by |: 'text -> https://...' "
                                      "(or tg://) or 'text -> callback:data' (a press is recorded). Variables "
                                      "work in texts and links. At most 8 in a row, 100 in all.")},
    }
    column_details_list = ("code", "channel", "locale", "category", "name", "description", "subject", "body",
                           "buttons",
                           "variables_schema", "is_active", "created_at", "updated_at", "updated_by", "versions")
    column_formatters_detail = {"body": _full_text, "subject": _full_text, "versions": _versions_link,
                                "category": code_cell,
                                # a shipped template's description is its event's (translated on the rules page)
                                "description": lambda view, context, model, name: (
                                    gettext(model.description) if model.description else "")}

    create_template = "admin/template_create.html"
    edit_template = "admin/template_edit.html"
    form_widget_args = {"body": {"rows": 14, "spellcheck": "false"}, "subject": {"rows": 1, "spellcheck": "false"},
                        "buttons": {"rows": 3, "spellcheck": "false",
                                    "placeholder": "Order -> https://shop.example.uz/o/{{ order_id }}\n"
                                                   "Yes -> callback:yes | No -> callback:no"}}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NotificationTemplate, name=_l("Templates"), endpoint="template", **kwargs)

    def is_visible(self) -> bool:
        return False  # the menu's "Templates" is the matrix by event (webapp/admin/template_matrix.py)

    def create_form(self, obj: Any = None) -> Any:
        """A missing cell of the matrix opens this form for its code, channel and language."""
        form = super().create_form(obj)
        if request.method == "GET":
            for name in ("code", "channel", "locale"):
                value = (request.args.get(name) or "")[:100]
                if value and getattr(form, name, None) is not None:
                    getattr(form, name).data = value
        return form

    # The editor's helpers (webapp/admin/template_editor.py).  POSTs: CSRF-checked by CSRFProtect.

    def catalogue(self) -> dict[str, Any]:
        return variables_catalogue()

    @expose("/preview/", methods=["POST"])
    def preview_view(self):
        if not can_write():
            abort(403)
        from vestnik.webapp import get_settings  # the app package imports this module

        draft = Draft.from_form(request.form)
        return jsonify(preview(get_session(), draft, default_zone=get_settings().default_timezone).as_json())

    @expose("/send-test/", methods=["POST"])
    def send_test_view(self):
        from flask_login import current_user

        from vestnik.webapp import get_delivery

        if not can_write():
            abort(403)
        db = get_session()
        admin = db.get(AdminUser, current_user.user_id)
        draft = Draft.from_form(request.form)
        try:
            result = send_test(db, get_delivery(), draft, admin)
        except TestSendRefused as exc:
            return jsonify({"ok": False, "error": str(exc)}), 422
        audit("template.send_test", "notification", result.notification_id,
              {"code": draft.code, "channel": draft.channel, "status": result.status})
        db.commit()
        return jsonify({"ok": result.status == "sent", "status": result.status, "error": result.error,
                        "address": admin_address(admin, draft.channel),
                        "url": url_for("notification.details_view", id=result.notification_id)})

    def validate_form(self, form) -> bool:
        ok = super().validate_form(form)
        if not ok or not hasattr(form, "body"):
            return ok
        problems = check_template(form.code.data or "", form.channel.data or "", form.subject.data or "",
                                  form.body.data or "", form.locale.data or "ru")
        # One template per code x channel x locale: say so at the field, not as a database error.
        raw_id = request.args.get("id", "")
        taken = get_session().scalar(select(NotificationTemplate.id).where(
            NotificationTemplate.code == (form.code.data or "").strip(),
            NotificationTemplate.channel == form.channel.data, NotificationTemplate.locale == form.locale.data,
            NotificationTemplate.id != (bounds.optional_integer(raw_id, "id", default=-1, minimum=1))))
        if taken is not None:
            problems.append(("code", f"a {form.channel.data} template {form.code.data} in {form.locale.data} "
                                     f"exists already (#{taken}): edit that one"))
        # Telegram's limits, at the field (shared/buttons.py): the check the editor's preview shows live
        problems += [("buttons", m) for m in button_problems(form.channel.data or "", form.buttons.data or "")]
        for field_name, message in problems:
            getattr(form, field_name).errors = [*getattr(form, field_name).errors, message]
        return not problems

    def on_model_change(self, form, model: NotificationTemplate, is_created: bool) -> None:
        from flask_login import current_user
        from sqlalchemy import inspect

        if not is_created:
            # The content before this save, kept as version 1 when the template has no versions yet
            # (a shipped default): so the original can be restored.  Read before any query autoflushes.
            state = inspect(model)
            before = {key: (state.attrs[key].history.deleted or state.attrs[key].history.unchanged or [None])[0]
                      for key in ("name", "subject", "body", "is_active", "updated_by", "updated_at")}
            db = get_session()
            with db.no_autoflush:
                known = db.scalar(select(TemplateVersion.id).where(TemplateVersion.template_id == model.id).limit(1))
            if known is None:
                db.add(TemplateVersion(template_id=model.id, version=1, name=before["name"] or "",
                                       subject=before["subject"], body=before["body"] or "",
                                       is_active=bool(before["is_active"]),
                                       updated_by=before["updated_by"] or "shipped default",
                                       created_at=before["updated_at"] or utcnow()))
        model.updated_by = current_user.actor
        model.updated_at = utcnow()

    def after_model_change(self, form, model: NotificationTemplate, is_created: bool) -> None:
        version = self._new_version(model)
        audit("template.create" if is_created else "template.update", "template", model.id,
              {"code": model.code, "channel": model.channel, "locale": model.locale, "version": version})
        get_session().commit()

    @staticmethod
    def _new_version(model: NotificationTemplate) -> int:
        db = get_session()
        db.flush()
        last = db.scalar(select(TemplateVersion.version).where(TemplateVersion.template_id == model.id)
                         .order_by(TemplateVersion.version.desc()).limit(1)) or 0
        db.add(TemplateVersion(template_id=model.id, version=last + 1, name=model.name, subject=model.subject,
                               body=model.body, is_active=model.is_active, updated_by=model.updated_by))
        return last + 1

    # ------------------------------------------------------------ versions: list, view, restore

    def _template_or_404(self, raw_id: str | None) -> NotificationTemplate:
        template = get_session().get(NotificationTemplate, bounds.identifier(raw_id, "id"))
        if template is None:
            abort(404)
        return template

    @expose("/versions/")
    def versions_view(self):
        template = self._template_or_404(request.args.get("id"))
        versions = get_session().scalars(select(TemplateVersion).where(TemplateVersion.template_id == template.id)
                                         .order_by(TemplateVersion.version.desc())).all()
        return self.render("admin/template_versions.html", tpl=template, versions=versions, shown=None)

    @expose("/versions/view/")
    def version_view(self):
        import difflib

        template = self._template_or_404(request.args.get("id"))
        version = bounds.integer(request.args.get("version"), "version", minimum=1, maximum=2**31 - 1)
        shown = get_session().scalar(select(TemplateVersion).where(
            TemplateVersion.template_id == template.id, TemplateVersion.version == version))
        if shown is None:
            abort(404)
        diff = "\n".join(difflib.unified_diff(
            (template.body or "").splitlines(), (shown.body or "").splitlines(),
            fromfile="current", tofile=f"version {shown.version}", lineterm=""))
        return self.render("admin/template_versions.html", tpl=template, versions=None, shown=shown,
                           diff=diff)

    @expose("/versions/restore/", methods=["POST"])
    def restore_view(self):
        from flask_login import current_user

        if not can_write():
            abort(403)
        template = self._template_or_404(request.form.get("id"))
        version = bounds.integer(request.form.get("version"), "version", minimum=1, maximum=2**31 - 1)
        db = get_session()
        shown = db.scalar(select(TemplateVersion).where(
            TemplateVersion.template_id == template.id, TemplateVersion.version == version))
        if shown is None:
            abort(404)
        # The event schemas may have changed since: a restored version passes the same checks as a save.
        problems = check_template(template.code, template.channel, shown.subject or "", shown.body,
                                  template.locale)
        if problems:
            flash(gettext("Version %(version)s cannot be restored: %(problems)s", version=shown.version,
                          problems="; ".join(m for _f, m in problems)), "error")
            return redirect(url_for(".version_view", id=template.id, version=shown.version))
        template.name, template.subject, template.body = shown.name, shown.subject, shown.body
        template.is_active = shown.is_active
        template.updated_by = current_user.actor
        template.updated_at = utcnow()
        version = self._new_version(template)
        audit("template.restore", "template", template.id, {"code": template.code, "channel": template.channel,
                                                             "locale": template.locale,
                                                             "restored_version": shown.version,
                                                             "version": version})
        db.commit()
        flash(gettext("Version %(old)s restored as version %(new)s.", old=shown.version, new=version), "success")
        return redirect(url_for(".edit_view", id=template.id))

    def delete_model(self, model: NotificationTemplate) -> bool:
        raise ValidationError(gettext("templates are deactivated, not deleted (history refers to them)"))


# ------------------------------------------------------------------ clients


def _client_notifications(view, context, model, name) -> Markup:
    """The client's latest notifications (index on recipient_id, created_at), then the filterable history."""
    latest = get_session().scalars(
        select(Notification).where(Notification.recipient_id == model.id)
        .order_by(Notification.created_at.desc()).limit(20)).all()
    rows = Markup("").join(
        Markup('<tr><td class="text-nowrap">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>').format(
            n.created_at.strftime("%Y-%m-%d %H:%M"), n.channel, _status_cell(view, context, n, "status"),
            n.event_type, _text_cell(view, context, n, "body"))
        for n in latest)
    link = Markup('<a href="{}">{}</a>').format(
        url_for("notification.index_view", flt0_client_id_equals=model.crm_id),
        gettext("all notifications of this client, with filters →"))
    if not latest:
        return Markup("{} ").format(gettext("None yet.")) + link
    return Markup('<table class="table table-sm mb-1"><tr><th>{}</th><th>{}</th><th>{}</th>'
                  "<th>{}</th><th>{}</th></tr>{}</table>{}").format(
        gettext("created (UTC)"), gettext("channel"), gettext("status"), gettext("event"), gettext("text"), rows, link)


def _reachability_badge(reason: str | None) -> Markup:
    if not reason:
        return Markup('<span class="badge badge-success">{}</span>').format(gettext("reachable"))
    return Markup('<span class="badge badge-danger">{}</span> {}').format(gettext("unreachable"), reason)


def _groups_and_tags(view, context, model, name) -> Markup:
    from vestnik.shared.models import ClientGroup, ClientTag

    db = get_session()
    groups = db.scalars(select(ClientGroup.name).where(ClientGroup.client_id == model.id).order_by(ClientGroup.name))
    tags = db.scalars(select(ClientTag.tag).where(ClientTag.client_id == model.id).order_by(ClientTag.tag))
    badges = [Markup('<span class="badge badge-info">{}</span>').format(g) for g in groups]
    badges += [Markup('<span class="badge badge-light border">#{}</span>').format(t) for t in tags]
    return Markup(" ").join(badges) if badges else Markup("—")


def _known_time_zone(form, field) -> None:
    """An IANA time zone name (Europe/Moscow): anything else would be a client whose times cannot be shown."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = (field.data or "").strip()
    try:
        if not name or len(name) > 64:
            raise ValueError(name)
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"not a known time zone: {name[:64]!r} (e.g. Europe/Moscow)") from None
    field.data = name


def _phone_or_none(value: Any) -> str | None:
    """A typed phone as E.164 (blank: none); a ValueError becomes the field's error (WTForms filters)."""
    if value is None or not str(value).strip():
        return None
    try:
        return bounds.phone(value, "phone")
    except bounds.BoundsError as exc:
        raise ValueError(exc.reason) from None


def _language_code(form, field) -> None:
    """ru, uz-latn (uz_Latn), en: the same rule as the CSV import (shared/locales.py)."""
    try:
        field.data = locales.normalize(field.data or "")
    except locales.LocaleError as exc:
        raise ValidationError(str(exc).split(": ", 1)[1]) from None


def _channel_columns() -> dict[str, tuple[str, str, Any]]:
    """The client card's per-channel columns, from the channel registry: name -> (channel, label, formatter)."""
    def address(channel: str) -> Any:
        return lambda view, context, model, name: model.address(channel) or ""

    def switch(channel: str) -> Any:
        return lambda view, context, model, name: Markup("&#10003;") if model.channel_enabled(channel) else ""

    def reachability(channel: str) -> Any:
        return lambda view, context, model, name: _reachability_badge(model.unreachable_reason(channel))

    out: dict[str, tuple[str, str, Any]] = {}
    for channel, cls in sorted(CHANNELS.items()):
        out[f"address_{channel}"] = (channel, cls.address_label, address(channel))
        out[f"reachability_{channel}"] = (channel, _l("%(channel)s reachability", channel=cls.title),
                                          reachability(channel))
        out[f"enabled_{channel}"] = (channel, cls.title, switch(channel))
    return out


_CHANNEL_COLUMNS = _channel_columns()


def _address_check(channel: str) -> Any:
    """The channel's own check of a typed address; blank removes it."""
    def check(form, field) -> None:
        value = (field.data or "").strip()
        if not value:
            field.data = ""
            return
        try:
            field.data = check_address(channel, value)
        except ValueError as exc:
            raise ValidationError(f"{CHANNELS[channel].address_label}: {exc}") from None

    return check
_CHANNEL_NAMES = sorted(CHANNELS)


class ClientView(SecureModelView):
    allow_edit = True
    # the CRM's id (crm_id: 42 or a UUID), never the row key a string id gets (shared/client_ids.py)
    column_list = ("crm_id", "name", "phone", *(f"address_{c}" for c in _CHANNEL_NAMES), "locale",
                   *(f"enabled_{c}" for c in _CHANNEL_NAMES), "allow_marketing_notifications")
    column_labels = {"crm_id": _l("Client id"), "allow_marketing_notifications": _l("Marketing"),
                     "allow_service_notifications": _l("Service"),
                     "phone": _l("Phone (E.164)"), "name": _l("Name"), "locale": _l("Locale"),
                     "timezone": _l("Timezone"), "last_active_at": _l("Last Active At"), "created_at": _l("Created At"),
                     "updated_at": _l("Updated At"),
                     **{name: label for name, (_, label, _) in _CHANNEL_COLUMNS.items()}}
    column_searchable_list = ("crm_id", "name", "phone", "addresses.address")
    column_filters = ("locale", "allow_marketing_notifications")
    column_default_sort = ("id", False)
    form_columns = ("phone", *(f"set_address_{c}" for c in _CHANNEL_NAMES), *(f"enabled_{c}" for c in _CHANNEL_NAMES),
                    "allow_service_notifications", "allow_marketing_notifications", "locale", "timezone")
    column_details_list = ("crm_id", "name", "phone",
                           *(n for c in _CHANNEL_NAMES for n in (f"address_{c}", f"reachability_{c}")),
                           "locale", "timezone", *(f"enabled_{c}" for c in _CHANNEL_NAMES),
                           "allow_service_notifications", "allow_marketing_notifications", "groups_and_tags",
                           "last_active_at", "created_at", "updated_at", "history")
    column_formatters = {name: formatter for name, (_, _, formatter) in _CHANNEL_COLUMNS.items()}
    column_formatters_detail = {"history": _client_notifications, "groups_and_tags": _groups_and_tags,
                                **{name: formatter for name, (_, _, formatter) in _CHANNEL_COLUMNS.items()}}
    column_labels = {**column_labels, "history": _l("Notifications"),
                     "groups_and_tags": _l("Groups and tags (broadcast targeting)")}

    form_args = {
        "locale": {"validators": [_language_code]},
        "timezone": {"validators": [_known_time_zone]},
        # normalised before the column's length check: "+7 (916) 123-45-67" is stored as +79161234567
        "phone": {"filters": [_phone_or_none],
                  "description": _l("E.164: + and the country code; spaces, hyphens and brackets are dropped")},
    }
    #: the client's address and switch per channel (rows of client_addresses, not columns); an address is
    #: checked by its channel (a webhook URL: http(s), a public target) and refused naming the field
    form_extra_fields = {
        **{f"set_address_{c}": StringField(_l(CHANNELS[c].address_label), validators=[_address_check(c)])  # noqa: INT001
           for c in _CHANNEL_NAMES},
        **{f"enabled_{c}": BooleanField(_l(CHANNELS[c].title)) for c in _CHANNEL_NAMES},  # noqa: INT001
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(Client, name=_l("Clients"), endpoint="client", **kwargs)

    def get_one(self, id: Any) -> Any:  # noqa: A002 - Flask-Admin's name
        # A client's page is addressed by its row key, negative for a string id (shared/client_ids.py).
        try:
            key = bounds.integer(id, "id")
        except BoundsError:
            return None
        return get_session().get(Client, key) if key else None

    def on_form_prefill(self, form, id) -> None:  # noqa: A002 - flask-admin's name
        model = self.get_one(id)
        for channel in _CHANNEL_NAMES:
            getattr(form, f"enabled_{channel}").data = model.channel_enabled(channel)
            getattr(form, f"set_address_{channel}").data = model.address(channel) or ""

    def on_model_change(self, form, model: Client, is_created: bool) -> None:
        from sqlalchemy import inspect

        changes = {}
        for channel in _CHANNEL_NAMES:
            typed = getattr(form, f"set_address_{channel}", None)
            if typed is not None and (typed.data or None) != model.address(channel):
                changes[f"address_{channel}"] = [model.address(channel), typed.data or None]
                model.set_address(channel, typed.data or None)
            field = getattr(form, f"enabled_{channel}", None)
            if field is not None and bool(field.data) != model.channel_enabled(channel):
                changes[f"enabled_{channel}"] = [model.channel_enabled(channel), bool(field.data)]
                model.set_channel_enabled(channel, bool(field.data))
        state = inspect(model)
        for attr in state.attrs:
            if attr.key not in state.mapper.column_attrs:
                continue  # the addresses (relationship rows) are in changes already, by channel
            hist = attr.history
            if hist.has_changes():
                changes[attr.key] = [hist.deleted[0] if hist.deleted else None,
                                     hist.added[0] if hist.added else None]
        audit("client.preferences", "client", model.crm_id, {"changes": changes})
