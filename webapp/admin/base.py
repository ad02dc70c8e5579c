"""One secure base for every admin view: deny by default.

Flask-Admin views are public unless ``is_accessible`` says otherwise, so no
view in Vestnik derives from Flask-Admin directly: they derive from
:class:`SecureModelView` / :class:`SecureView`, which require a signed-in
admin and let the read-only *support* role look but not change anything.

CSRF: the app runs Flask-WTF's ``CSRFProtect`` on every POST, so the views'
forms are built on ``FlaskForm`` (a SecureForm token would not be the one
CSRFProtect checks); delete and bulk-action forms are covered the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import abort, flash, has_app_context, redirect, request, url_for
from flask_admin import AdminIndexView, BaseView
from flask_admin.contrib.sqla import ModelView
from flask_admin.model import typefmt
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.exc import StatementError

from vestnik.shared import bounds
from vestnik.shared.bounds import BoundsError
from vestnik.shared.models import AuditLog
from vestnik.webapp.db import get_session


class RequestSession:
    """Flask-Admin keeps one session object; ours is per request (vestnik.webapp.db).

    ``session`` exists only so Flask-Admin does not take this for a bare
    session it would warn about; every other attribute is the request's session.
    """

    session = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or not has_app_context():
            raise AttributeError(name)  # introspection at start-up, outside any request
        return getattr(get_session(), name)


def is_signed_in() -> bool:
    return bool(current_user and current_user.is_authenticated)


def can_write() -> bool:
    return is_signed_in() and current_user.is_admin


def audit(action: str, object_type: str, object_id: Any, details: dict[str, Any] | None = None) -> None:
    """Record an admin's action in the current request's session (committed with it)."""
    get_session().add(AuditLog(actor=current_user.actor, action=action, object_type=object_type,
                               object_id=None if object_id is None else str(object_id), details=details or {}))


class _Guard:
    def is_accessible(self) -> bool:
        return is_signed_in()

    def inaccessible_callback(self, name: str, **kwargs: Any):
        if is_signed_in():
            abort(403)
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


class SecureIndexView(_Guard, AdminIndexView):
    pass


class SecureView(_Guard, BaseView):
    pass


def _utc_seconds(view: Any, value: datetime, name: str) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")  # stored in UTC; the labels say so


class SecureModelView(_Guard, ModelView):
    form_base_class = FlaskForm
    column_type_formatters = {**typefmt.BASE_FORMATTERS, datetime: _utc_seconds}
    column_type_formatters_detail = {**typefmt.DETAIL_FORMATTERS, datetime: _utc_seconds,
                                     bool: lambda view, value, name: gettext("yes") if value else gettext("no")}
    page_size = 50
    can_set_page_size = True
    page_size_options = (20, 50, 100)
    # No COUNT(*) over millions of rows on every page: previous / next only.
    simple_list_pager = True
    named_filter_urls = True  # ?flt0_status_equals=failed: links into the history read well
    can_view_details = True

    #: what the support role may do: look
    def _writable(self, configured: bool) -> bool:
        return configured and can_write()

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return self._writable(self.allow_create)

    @property
    def can_edit(self) -> bool:  # type: ignore[override]
        return self._writable(self.allow_edit)

    @property
    def can_delete(self) -> bool:  # type: ignore[override]
        return self._writable(self.allow_delete)

    @can_create.setter
    def can_create(self, value: bool) -> None:
        self.allow_create = value

    @can_edit.setter
    def can_edit(self, value: bool) -> None:
        self.allow_edit = value

    @can_delete.setter
    def can_delete(self, value: bool) -> None:
        self.allow_delete = value

    allow_create = False
    allow_edit = False
    allow_delete = False

    #: bounded pagination: deep OFFSETs are slow on millions of rows; filter instead
    max_page = 200

    def get_list(self, page, sort_field, sort_desc, search, filters, execute=True, page_size=None):
        page = max(0, min(int(page or 0), self.max_page))
        try:
            return super().get_list(page, sort_field, sort_desc, search, filters, execute=execute,
                                    page_size=page_size)
        except (StatementError, OverflowError):
            # A filter value the database refuses (a number past BIGINT, a NUL byte): say so, not a 500.
            get_session().rollback()
            flash(gettext("A filter value was not understood; showing nothing for it."), "error")
            return None, []

    def get_one(self, id: Any) -> Any:  # noqa: A002 - Flask-Admin's name
        # Every Vestnik model has an integer key: anything else is "no such record", not a database error.
        try:
            key = bounds.identifier(id)
        except BoundsError:
            return None
        return super().get_one(str(key))

    def is_action_allowed(self, name: str) -> bool:
        return can_write() and super().is_action_allowed(name)

    def get_column_name(self, field: str) -> str:
        """The column's label in the admin's language: a label given as a plain string, or the name
        Flask-Admin makes of the field ("event_type": "Event Type"), looked up in the catalogue
        (:data:`COLUMN_NAMES` marks the latter for extraction)."""
        label = super().get_column_name(field)
        if isinstance(label, LazyString):  # marked where it is given, translated when drawn
            return label
        return _l(str(label))  # noqa: INT001 - a name Flask-Admin made: marked in COLUMN_NAMES

    def __init__(self, model: type, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, RequestSession(), name=name, **kwargs)


#: What a status code reads as (notifications, outbox events, broadcasts), in the admin's language.
STATUS_NAMES = {
    "pending": _l("pending"), "processing": _l("processing"), "sent": _l("sent"), "failed": _l("failed"),
    "canceled": _l("canceled"), "published": _l("published"), "processed": _l("processed"),
    "draft": _l("draft"), "testing": _l("testing"), "running": _l("running"), "paused": _l("paused"),
    "completed": _l("completed"), "scheduled": _l("scheduled"), "finished": _l("finished"),
    "service": _l("service"), "marketing": _l("marketing"), "manual": _l("manual"), "auto": _l("automatic"),
    # a delivery attempt's outcome (workers/channels/base.py)
    "transient": _l("temporary failure"), "rate_limited": _l("rate limited"), "permanent": _l("permanent failure"),
    "uncertain": _l("uncertain"),
}


def duration(seconds: float | None) -> str:
    """How long until something ends, in the admin's language ("about 12 min"); "" when unknown."""
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s < 60:
        return gettext("under a minute")
    days, rest = divmod(s, 86400)
    hours, minutes = rest // 3600, rest % 3600 // 60
    if days == 1:
        return gettext("about 1 day %(hours)s h", hours=hours)
    if days:
        return gettext("about %(days)s days %(hours)s h", days=days, hours=hours)
    if hours:
        return gettext("about %(hours)s h %(minutes)s min", hours=hours, minutes=minutes)
    return gettext("about %(minutes)s min", minutes=minutes)


def code_cell(view: Any, context: Any, model: Any, name: str) -> str:
    """A column holding a status, category or initiator code, as the admin reads it."""
    value = getattr(model, name)
    return gettext("system") if value == "system" else status_name(value)


def status_name(code: str | None) -> str:
    """A status (or category, rollout mode) code as the admin reads it; an unknown code as it is."""
    return str(STATUS_NAMES.get(code or "", code or ""))


#: The names Flask-Admin derives from model fields (``_prettify_name``) on list, details and form
#: pages, marked here so that ``make translations`` extracts them; :meth:`SecureModelView.get_column_name`
#: translates them when a page is drawn.
COLUMN_NAMES = (
    _l("Id"), _l("Status"), _l("Channel"), _l("Event Type"), _l("Initiator"), _l("Key"), _l("Delivery Uncertain"),
    _l("Broadcast Id"), _l("Recipient Address"), _l("Template Code"), _l("Step"), _l("Locale"), _l("Category"),
    _l("Origin"), _l("Subject"), _l("Body"), _l("Last Error"), _l("External Id"), _l("Created At"),
    _l("Updated At"), _l("Send At"), _l("Name"), _l("Timezone"), _l("Last Active At"), _l("Description"),
    _l("Variables Schema"), _l("Is Active"), _l("Versions"), _l("Buttons"), _l("Code"), _l("Updated By"),
    _l("Event"), _l("Data"), _l("Recipients"), _l("Error"), _l("Idempotency Key"), _l("Processed At"),
    _l("Published At"), _l("Publish Attempts"), _l("Unknown Clients"), _l("Actor"), _l("Action"),
    _l("Object Type"), _l("Object Id"), _l("Details"), _l("Phone"), _l("When"), _l("Who"), _l("What changed"),
    _l("Object"), _l("Message"), _l("Attempts"), _l("Webhook URL"),
)
