"""Quiet hours per category in the admin: whether they apply and the window clients get by default
(a client's own window, set in the profile, wins; urgent news is never held — workers/quiet_hours.py)."""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_babel import gettext
from flask_login import current_user
from flask_wtf import FlaskForm

from vestnik.shared.models import Category, QuietHours, utcnow
from vestnik.webapp.admin.base import SecureView, audit, can_write, status_name
from vestnik.webapp.db import get_session
from vestnik.workers import quiet_hours


class QuietHoursView(SecureView):
    @expose("/", methods=("GET", "POST"))
    def index(self):
        db = get_session()
        form = FlaskForm()
        if request.method == "POST":
            if not can_write():
                abort(403)
            if not form.validate_on_submit():
                abort(400)
            category = request.form.get("category", "")
            if category not in {c.value for c in Category}:
                abort(400)
            try:
                window = quiet_hours.Window.parse(request.form.get("start", ""), request.form.get("end", ""))
            except ValueError as exc:
                flash(gettext("Not saved: %(error)s", error=exc), "error")
                return redirect(url_for(".index"))
            enabled = request.form.get("enabled") == "1"
            before = quiet_hours.load_policies(db).get(category)
            row = db.get(QuietHours, category) or QuietHours(category=category)
            row.enabled, row.start_min, row.end_min = enabled, window.start_min, window.end_min
            row.updated_by, row.updated_at = current_user.actor, utcnow()
            db.add(row)
            audit("quiet_hours.update", "quiet_hours", category, {"changes": {
                "quiet hours": [f"{'on' if before and before.enabled else 'off'} "
                                f"{before.window.label() if before else ''}".strip(),
                                f"{'on' if enabled else 'off'} {window.label()}"]}})
            db.commit()
            flash(gettext("Quiet hours for %(category)s messages: %(state)s, %(window)s.",
                          category=status_name(category), state=gettext("on") if enabled else gettext("off"),
                          window=window.label()), "success")
            return redirect(url_for(".index"))
        policies = quiet_hours.load_policies(db)
        return self.render("admin/quiet_hours.html", policies=policies, form=form, can_write=can_write(),
                           hhmm=quiet_hours.hhmm, urgent=sorted(quiet_hours.URGENT_EVENTS))
