"""The Vestnik web app: ``create_app(settings)`` builds it, ``serve`` runs it.

Layered config: Flask defaults, then what :class:`~vestnik.shared.config.Settings`
says, then ``config`` overrides from the caller (tests, the demo).  Nothing is
read from the environment here: ``vestnik web`` loads Settings once and passes
them in, so the web app and the workers always agree.

What every request gets:

- a database session per request: ``vestnik.webapp.db.get_session()`` (opened on first
  use, closed and rolled back unless committed at teardown);
- bounded input (``boundaries.py``): ``<int:...>`` in URLs takes ASCII digits within
  BIGINT, every query and form field is storable text within a size limit, and a
  :class:`~vestnik.shared.bounds.BoundsError` from a view is a 400 naming the field;
- CSRF protection on every unsafe method (Flask-WTF ``CSRFProtect``), so
  Flask-Admin's delete and bulk actions are covered as well as its forms; a
  future webhook view that authenticates by signature opts out with
  ``@csrf.exempt``;
- session cookies that are HttpOnly, SameSite=Lax, and Secure when
  ``public_url`` is https; conservative security headers (CSP without inline
  scripts; a view may set its own).

Areas are blueprints: ``health`` and ``webhooks`` everywhere; ``democrm`` and
``demosent`` in the demo only; the admin (``webapp/admin/``, Flask-Admin with
one secure base view) and the client profile plug in in :func:`create_app` as
they land.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, render_template
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.orm import Session, sessionmaker

from vestnik.shared.config import Settings
from vestnik.shared.errors import ConfigError
from vestnik.webapp import db

if TYPE_CHECKING:
    from vestnik.workers.delivery import Delivery

csrf = CSRFProtect()

#: the largest request body (forms, webhooks); CSV imports go through the CLI
MAX_CONTENT_LENGTH = 2 * 1024 * 1024

#: No inline scripts or styles: the pages load /static files only.
DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

__all__ = ["create_app", "csrf", "get_settings", "require_secret_key", "serve"]


def require_secret_key(settings: Settings) -> None:
    """Refuse to run without a secret key: sessions and CSRF tokens would be forgeable."""
    if not settings.secret_key.strip():
        raise ConfigError(
            "VESTNIK_SECRET_KEY",
            "is empty; the web app signs sessions and CSRF tokens with it. Set it to a long random value, "
            "e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(32))' "
            "(vestnik demo makes its own)",
        )


def _config_from(settings: Settings) -> dict[str, Any]:
    secure = settings.public_url.lower().startswith("https://")
    return {
        "SECRET_KEY": settings.secret_key,
        "SESSION_COOKIE_NAME": "vestnik_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": secure,
        # Flask-Login's "remember me" cookie, for the admin when it lands.
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": secure,
        "PREFERRED_URL_SCHEME": "https" if secure else "http",
        "MAX_CONTENT_LENGTH": MAX_CONTENT_LENGTH,
        "WTF_CSRF_TIME_LIMIT": 3600,
        "CONTENT_SECURITY_POLICY": DEFAULT_CSP,
        "JSON_SORT_KEYS": False,
    }


def create_app(
    settings: Settings,
    *,
    session_factory: sessionmaker[Session] | None = None,
    config: Mapping[str, Any] | None = None,
) -> Flask:
    """Build the app from ``settings``.

    ``session_factory`` lets the demo and tests share their engine; by default
    the app makes its own from ``settings.database_url``.  Raises ConfigError
    naming VESTNIK_SECRET_KEY when the secret key is empty.
    """
    require_secret_key(settings)
    app = Flask(__name__)
    app.config.from_mapping(_config_from(settings))
    if config:
        app.config.update(config)
    app.extensions["vestnik_settings"] = settings
    if settings.trusted_proxies > 0:
        # Behind N proxies, the client's address is the Nth X-Forwarded-For entry from the right;
        # without this every client would share the proxy's address (and its per-IP limits).
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]

    if session_factory is None:
        from vestnik.shared.db import make_engine, make_session_factory

        session_factory = make_session_factory(make_engine(settings.database_url))
    db.init_app(app, session_factory)
    csrf.init_app(app)

    from vestnik.webapp import admin, boundaries, health, metrics, profile, webhooks

    boundaries.init_app(app)  # bounded path numbers and fields (before the blueprints add their rules)

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(webhooks.bp)  # signed machine callers: CSRF-exempt view by view
    from vestnik.webapp import unsubscribe

    app.register_blueprint(unsubscribe.bp)
    csrf.exempt(unsubscribe.one_click)  # RFC 8058: mail clients POST without a token; the URL's token authenticates
    admin.init_app(app)  # Flask-Admin at /admin; every view behind one secure base class
    profile.init_app(app)  # the client's own pages at /me
    from vestnik.webapp import api

    api.init_app(app)  # the HTTP API at /api/v1, for CRMs elsewhere (API keys, no cookies)

    app.register_error_handler(CSRFError, _csrf_error)
    app.after_request(_security_headers)
    return app


def get_settings() -> Settings:
    """The Settings the current app was built from."""
    return current_app.extensions["vestnik_settings"]


_delivery_lock = threading.Lock()


def get_delivery() -> Delivery:
    """The web process's way to send at once (an admin's "send test to me"): the workers' delivery
    path with this process's channels and the shared limiter, made on first use (after gunicorn's fork)."""
    from vestnik.workers.channels import build_channels
    from vestnik.workers.delivery import Delivery
    from vestnik.workers.limits import build_limiter
    from vestnik.workers.notifications import seed_source

    with _delivery_lock:
        found = current_app.extensions.get("vestnik_delivery")
        if found is None:
            settings = get_settings()
            factory = db.session_factory()
            limiter = build_limiter(settings, seed=seed_source(factory))
            found = Delivery(factory, build_channels(settings), settings, limiter=limiter)
            current_app.extensions["vestnik_delivery"] = found
        return found


def _csrf_error(error: CSRFError) -> tuple[str, int]:
    # Say why (expired page, missing token) instead of a bare "Bad Request".
    return render_template("error.html", title="The form has expired", message=error.description), 400


def _security_headers(response):
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    csp = current_app.config.get("CONTENT_SECURITY_POLICY")
    if csp:
        headers.setdefault("Content-Security-Policy", csp)
    return response


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> int:
    """Run the app for production (``vestnik web``) under gunicorn; return the exit code."""
    from vestnik.webapp.server import serve as _serve

    return _serve(settings, host=host, port=port)
