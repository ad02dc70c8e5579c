"""The admin (Flask-Admin): sign-in, history, templates, clients, events, audit.

``init_app(app)`` mounts it at /admin.  Every view derives from the secure
bases in ``webapp/admin/base.py``.  Flask-Admin's pages carry inline scripts,
so /admin responses get their own Content-Security-Policy with a per-request
nonce (Flask-Admin supports one) instead of 'unsafe-inline'.
"""

from __future__ import annotations

import secrets

from flask import Flask, g, request
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme
from flask_babel import lazy_gettext as _l

from vestnik.webapp.admin import audit_format, auth, i18n
from vestnik.webapp.admin.account import AccountView
from vestnik.webapp.admin.api_keys import ApiKeyView
from vestnik.webapp.admin.broadcasts import BroadcastView
from vestnik.webapp.admin.chats import ChatsView
from vestnik.webapp.admin.dashboard import DashboardView
from vestnik.webapp.admin.extra import AuditView, OutboxEventView
from vestnik.webapp.admin.files import FilesView
from vestnik.webapp.admin.quiet_hours import QuietHoursView
from vestnik.webapp.admin.reports import ReportsView
from vestnik.webapp.admin.rules import RulesView
from vestnik.webapp.admin.template_matrix import TemplatesByEventView
from vestnik.webapp.admin.views import ClientView, NotificationView, TemplateView


def _nonce() -> str:
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


def _admin_csp(response):
    if request.path.startswith("/admin"):
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; script-src 'self' 'nonce-{_nonce()}'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
            "form-action 'self'"
        )
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> Admin:
    auth.init_app(app)
    i18n.init_app(app)
    admin = Admin(
        app, name="Vestnik", url="/admin", theme=Bootstrap4Theme(base_template="admin/vestnik_base.html"),
        index_view=DashboardView(name=_l("Dashboard"), url="/admin"), csp_nonce_generator=_nonce,
    )
    admin.add_view(NotificationView())
    admin.add_view(TemplatesByEventView(name=_l("Templates"), endpoint="templates", url="/admin/templates"))
    admin.add_view(TemplateView())
    admin.add_view(ClientView())
    admin.add_view(BroadcastView())
    admin.add_view(ChatsView(name=_l("Groups and channels"), endpoint="chats", url="/admin/chats"))
    admin.add_view(ReportsView(name=_l("Reports"), endpoint="reports", url="/admin/reports"))
    admin.add_view(OutboxEventView())
    admin.add_view(RulesView(name=_l("Rules"), endpoint="rules", url="/admin/rules"))
    admin.add_view(FilesView(name=_l("Files"), endpoint="files", url="/admin/files"))
    admin.add_view(QuietHoursView(name=_l("Quiet hours"), endpoint="quiet_hours", url="/admin/quiet-hours"))
    admin.add_view(AuditView())
    admin.add_view(ApiKeyView(name=_l("API keys"), endpoint="apikeys", url="/admin/api-keys"))
    admin.add_view(AccountView(name=_l("My account"), endpoint="account", url="/admin/account"))
    app.after_request(_admin_csp)
    audit_format.install(app)
    return admin
