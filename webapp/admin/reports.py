"""Reports in the admin: per broadcast, template or event type (``workers/reports.py``)."""

from __future__ import annotations

from datetime import timedelta

from flask import request
from flask_admin import expose
from flask_babel import gettext as _

from vestnik.shared.models import utcnow
from vestnik.webapp.admin.base import SecureView
from vestnik.webapp.db import get_session
from vestnik.workers import reports

PERIODS = (1, 7, 30, 90)


class ReportsView(SecureView):
    @expose("/")
    def index(self):
        by = request.args.get("by", "broadcast")
        if by not in reports.BY:
            by = "broadcast"
        try:
            days = int(request.args.get("days", "30"))
        except ValueError:
            days = 30
        days = days if days in PERIODS else 30
        until = utcnow()
        rows = reports.report(get_session(), by, until - timedelta(days=days), until + timedelta(seconds=1))
        kinds = [("broadcast", _("Broadcasts")), ("template", _("Templates")), ("event", _("Event types"))]
        column = {"broadcast": _("Broadcast"), "template": _("Template"), "event": _("Event type")}[by]
        return self.render("admin/reports.html", rows=rows, by=by, days=days, periods=PERIODS, kinds=kinds,
                           column=column)
