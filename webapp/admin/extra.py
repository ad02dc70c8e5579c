"""Admin views of outbox events (bad input and failed handling are visible here; failed events can be
retried once the cause is fixed) and the audit log (read-only)."""

from __future__ import annotations

from typing import Any

from flask import flash
from flask_admin.actions import action
from flask_admin.contrib.sqla import filters as sqla_filters
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from vestnik.shared.models import AuditLog, OutboxEvent, OutboxStatus
from vestnik.webapp.admin.base import STATUS_NAMES, SecureModelView, audit, code_cell, status_name
from vestnik.webapp.admin.views import AwareAfter, AwareBefore, AwareBetween, _full_text


def _event_status(view, context, model, name) -> Markup:
    badge = {"processed": "success", "failed": "danger", "published": "info"}.get(model.status, "warning")
    out = Markup('<span class="badge badge-{}">{}</span>').format(badge, status_name(model.status))
    if model.error:
        out += Markup(" {}").format(model.error[:160])
    return out


def _unknown_clients(view, context, model, name) -> Markup | str:
    ids = model.unknown_clients or []
    if not ids:
        return ""
    return Markup('<span class="badge badge-warning">{}</span> {}').format(len(ids), ", ".join(ids))


class UnknownClientsFilter(sqla_filters.BaseSQLAFilter):
    """Events that named clients Vestnik did not know when it handled them (the dashboard links here)."""

    def apply(self, query, value, alias=None):
        column = self.get_column(alias)
        return query.filter(column.is_not(None)) if value == "1" else query.filter(column.is_(None))

    def operation(self) -> str:
        return gettext("named")


class OutboxEventView(SecureModelView):
    column_list = ("id", "created_at", "event_type", "key", "status", "initiator", "recipients")
    column_default_sort = ("id", True)
    column_formatters = {"status": _event_status, "initiator": code_cell}
    column_details_list = ("id", "event_type", "status", "error", "unknown_clients", "key", "idempotency_key",
                           "recipients", "data", "send_at", "initiator", "created_at", "published_at",
                           "processed_at", "publish_attempts")
    column_formatters_detail = {"error": _full_text, "unknown_clients": _unknown_clients, "status": _event_status,
                                "initiator": code_cell}
    column_labels = {"unknown_clients": _l("Unknown clients")}

    def __init__(self, **kwargs: Any) -> None:
        self.column_filters = [
            sqla_filters.FilterEqual(OutboxEvent.status, _l("Status"),
                                     options=[(s.value, STATUS_NAMES.get(s.value, s.value)) for s in OutboxStatus]),
            sqla_filters.FilterEqual(OutboxEvent.event_type, _l("Event type")),
            sqla_filters.FilterEqual(OutboxEvent.key, _l("Key")),
            UnknownClientsFilter(OutboxEvent.unknown_clients, _l("Unknown clients"),
                                 options=[("1", _l("yes")), ("0", _l("no"))]),
            AwareBetween(OutboxEvent.created_at, _l("Created (UTC)")),
        ]
        super().__init__(OutboxEvent, name=_l("Events"), endpoint="outboxevent", **kwargs)

    @action("retry", _l("Retry failed"), _l("Handle the selected failed events again (after fixing the cause)?"))
    def action_retry(self, ids: list[str]) -> None:
        from vestnik.webapp.db import get_session
        from vestnik.workers.handling import retry_failed

        db = get_session()
        changed = retry_failed(db, [int(i) for i in ids])
        audit("event.retry", "outbox_event", ",".join(ids[:50]), {"changed": changed, "selected": len(ids)})
        db.commit()
        flash(gettext("%(changed)s of %(selected)s event(s) will be handled again; others were not failed.",
                      changed=changed, selected=len(ids)), "success")


def _audit_actor(view, context, model, name) -> Markup:
    from vestnik.webapp.admin.audit_format import actor_label

    return actor_label(model.actor)


def _audit_object(view, context, model, name) -> Markup:
    from vestnik.webapp.admin.audit_format import object_link

    return object_link(model.object_type, model.object_id)


def _audit_details(view, context, model, name) -> Markup:
    from vestnik.webapp.admin.audit_format import details_html

    return details_html(model.details)


class AuditView(SecureModelView):
    """Who did what to which object: a person's name and email, a link, and what changed."""

    column_list = ("created_at", "actor", "action", "object_id", "details")
    column_labels = {"created_at": _l("When (UTC)"), "actor": _l("Who"), "object_id": _l("Object"),
                     "details": _l("What changed")}
    column_formatters = {"actor": _audit_actor, "object_id": _audit_object, "details": _audit_details}
    column_details_list = ("id", "created_at", "actor", "action", "object_type", "object_id", "details")
    column_formatters_detail = column_formatters

    def __init__(self, **kwargs: Any) -> None:
        self.column_filters = [
            sqla_filters.FilterEqual(AuditLog.actor, _l("Actor")),
            sqla_filters.FilterLike(AuditLog.action, _l("Action")),
            sqla_filters.FilterEqual(AuditLog.object_type, _l("Object type")),
            sqla_filters.FilterEqual(AuditLog.object_id, _l("Object id")),
            AwareBetween(AuditLog.created_at, _l("When (UTC)")),
            AwareAfter(AuditLog.created_at, _l("When (UTC)")),
            AwareBefore(AuditLog.created_at, _l("When (UTC)")),
        ]
        super().__init__(AuditLog, name=_l("Audit"), endpoint="audit", **kwargs)
