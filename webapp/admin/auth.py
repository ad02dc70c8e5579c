"""Admin sign-in: Flask-Login, hashed passwords, lockout, safe redirects.

- Passwords are hashed with Werkzeug's scrypt (``create-admin`` writes them).
- Five failed attempts lock the account for 15 minutes; the message never
  says whether the email exists.
- The login session holds the user's ``session_token``; logout rotates it,
  so a copied session cookie is refused afterwards even though Flask keeps
  sessions client-side.
- ``next`` is followed only to a path on this site (no open redirect).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, Flask, flash, redirect, render_template, request, session, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from werkzeug.security import check_password_hash
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from vestnik.shared import bounds
from vestnik.shared.bounds import BoundsError
from vestnik.shared.models import AdminRole, AdminUser, AuditLog, utcnow
from vestnik.webapp.db import get_session

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)

bp = Blueprint("auth", __name__, url_prefix="/admin")
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.session_protection = "strong"


class AdminPrincipal(UserMixin):
    """The signed-in admin as Flask-Login sees it (detached from the DB session)."""

    def __init__(self, user: AdminUser) -> None:
        self.user_id = user.id
        self.email = user.email
        self.role = user.role
        self.token = user.session_token

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
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=500)])


def safe_next(target: str | None) -> str:
    """Only a local path: '/admin/x' yes; '//evil', 'https://evil', '/\\\\evil' no."""
    default = url_for("admin.index")
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        db = get_session()
        email = form.email.data.strip().lower()
        user = db.scalars(select(AdminUser).where(func.lower(AdminUser.email) == email)).first()
        now = utcnow()
        if user is not None and user.locked_until and user.locked_until > now:
            flash("Too many failed attempts. Try again later.", "error")
            return render_template("admin/login.html", form=form), 429
        if user is None or not user.is_active or not check_password_hash(user.password_hash, form.password.data):
            if user is not None:
                user.failed_logins += 1
                if user.failed_logins >= MAX_FAILED_LOGINS:
                    user.locked_until = now + LOCKOUT
                    user.failed_logins = 0
                    db.add(AuditLog(actor=f"admin:{user.id}", action="admin.locked_out", object_type="admin_user",
                                    object_id=str(user.id), details={"ip": request.remote_addr}))
                db.commit()
            flash("Invalid email or password.", "error")
            return render_template("admin/login.html", form=form), 401
        user.failed_logins = 0
        user.locked_until = None
        user.last_login_at = now
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


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    app.register_blueprint(bp)
