"""Admin sign-in: Flask-Login, hashed passwords, lockout, safe redirects.

- Passwords are hashed with Werkzeug's scrypt (``create-admin`` writes them).
- Attempts are counted per address before the password is checked, in one
  atomic statement (``shared/counters.py``): the sixth attempt within the
  window is refused however many arrive in parallel, and five failures lock
  the address for 15 minutes from the fifth.
- No answer says whether an address is an admin's: unknown and inactive
  addresses are counted, locked and answered exactly as known ones, and a
  password is hashed either way (against a dummy hash), so the time taken
  says nothing either.
- The login session holds the user's ``session_token``; logout rotates it,
  so a copied session cookie is refused afterwards even though Flask keeps
  sessions client-side.
- ``next`` is followed only to a path on this site (no open redirect).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from vestnik.shared import bounds, counters
from vestnik.shared.bounds import BoundsError
from vestnik.shared.locales import ADMIN_LOCALES
from vestnik.shared.models import AdminRole, AdminUser, AuditLog, utcnow
from vestnik.webapp.admin import i18n
from vestnik.webapp.db import get_session

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)

bp = Blueprint("auth", __name__, url_prefix="/admin")
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = _l("Please sign in to see this page.")
login_manager.session_protection = "strong"


class AdminPrincipal(UserMixin):
    """The signed-in admin as Flask-Login sees it (detached from the DB session)."""

    def __init__(self, user: AdminUser) -> None:
        self.user_id = user.id
        self.email = user.email
        self.role = user.role
        self.token = user.session_token
        self.locale = user.locale  # the admin's language (webapp/admin/i18n.py)

    def get_id(self) -> str:
        return f"{self.user_id}:{self.token}"

    @property
    def is_admin(self) -> bool:
        return self.role == AdminRole.admin.value

    @property
    def actor(self) -> str:
        return f"admin:{self.user_id}"


@login_manager.user_loader
def _load(identity: str) -> AdminPrincipal | None:
    user_id, _, token = identity.partition(":")
    try:
        uid = bounds.identifier(user_id, "user")
    except BoundsError:
        return None
    if not token:
        return None
    user = get_session().get(AdminUser, uid)
    if user is None or not user.is_active or not secrets.compare_digest(user.session_token, token):
        return None
    return AdminPrincipal(user)


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=320)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=500)])


def safe_next(target: str | None) -> str:
    """Only a local path: '/admin/x' yes; '//evil', 'https://evil', '/\\\\evil' no."""
    default = url_for("admin.index")
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    return target


def login_scope(secret_key: str, email: str) -> str:
    """The counter of one address's attempts: a keyed hash, so the table lists no address."""
    mac = hmac.new(secret_key.encode(), f"admin-login:{email.strip().lower()}".encode(), hashlib.sha256)
    return "admin-login:" + mac.hexdigest()[:40]


@functools.cache
def _dummy_hash() -> str:
    """Checked when the address is unknown or inactive, so every login costs one scrypt either way."""
    return generate_password_hash(secrets.token_urlsafe(16))


def _locked(form: LoginForm):
    flash(gettext("Too many failed attempts. Try again later."), "error")
    return render_template("admin/login.html", form=form), 429


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        db = get_session()
        email = form.email.data.strip().lower()
        now = utcnow()
        scope = login_scope(current_app.config["SECRET_KEY"], email)
        attempt = counters.hit(db, scope, window_s=LOCKOUT.total_seconds(), now=now)
        db.commit()  # counted before the password is looked at, whatever happens next
        if attempt.over(MAX_FAILED_LOGINS):
            return _locked(form)
        user = db.scalars(select(AdminUser).where(func.lower(AdminUser.email) == email)).first()
        usable = user is not None and user.is_active
        matches = check_password_hash(user.password_hash if usable else _dummy_hash(), form.password.data)
        if not (usable and matches):
            if attempt.count == MAX_FAILED_LOGINS:
                # The last allowed failure: locked for the full period from now, audited for any address.
                counters.hold(db, scope, until=now + LOCKOUT)
                db.add(AuditLog(actor="anonymous", action="admin.locked_out", object_type="admin_login",
                                object_id=None, details={"ip": request.remote_addr, "scope": scope[-12:]}))
                db.commit()
            flash(gettext("Invalid email or password."), "error")
            return render_template("admin/login.html", form=form), 401
        counters.reset(db, scope)
        user.last_login_at = now
        chosen = session.get(i18n.SESSION_KEY)
        if user.locale is None and chosen in ADMIN_LOCALES:  # picked on the sign-in page: kept from now on
            user.locale = chosen
        db.commit()
        session.clear()  # no state carried over from before the login
        login_user(AdminPrincipal(user))
        return redirect(safe_next(request.args.get("next")))
    return render_template("admin/login.html", form=form)


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        db = get_session()
        user = db.get(AdminUser, current_user.user_id)
        if user is not None:
            user.session_token = secrets.token_hex(16)  # every copy of the old cookie dies here
            db.commit()
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.post("/language")
def language():
    """The admin's language switch (navbar, sign-in page): kept on the admin user when signed in."""
    lang = request.form.get("lang", "")
    if lang in ADMIN_LOCALES:
        session[i18n.SESSION_KEY] = lang
        if current_user.is_authenticated:
            db = get_session()
            user = db.get(AdminUser, current_user.user_id)
            if user is not None and user.locale != lang:
                db.add(AuditLog(actor=current_user.actor, action="admin.language", object_type="admin_user",
                                object_id=str(user.id), details={"locale": [user.locale, lang]}))
                user.locale = lang
                db.commit()
    return redirect(safe_next(request.form.get("next")))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    app.register_blueprint(bp)
