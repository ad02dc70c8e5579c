"""The admin's language: Russian or English (Flask-Babel), chosen per admin user.

Flask-Admin ships its own catalogues (list, create, edit, filters, WTForms'
messages); Vestnik's own words in the admin (the frame, sign-in, menus, my
account) are in ``webapp/translations/<locale>/LC_MESSAGES/messages.po``,
compiled to the ``.mo`` beside it and committed, so a clean clone's install
has them without a build step (``tests/unit/test_admin_catalogue.py`` fails
when a ``.mo`` is stale or a marked string has no translation).

Whose language: the signed-in admin's choice (``admin_users.locale``, the
switch in the navbar and on "My account"); before signing in, the choice made
on the sign-in page (kept in the session), else the browser's
``Accept-Language``, else English.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, request, session
from flask_babel import Babel, get_locale
from flask_login import current_user

from vestnik.shared.locales import ADMIN_LOCALES, NAMES, SHORT

TRANSLATIONS = Path(__file__).resolve().parents[1] / "translations"
SESSION_KEY = "vestnik_admin_lang"


def admin_locale() -> str:
    """The admin's language for this request (one of ``ADMIN_LOCALES``)."""
    chosen = getattr(current_user, "locale", None) if current_user and current_user.is_authenticated else None
    if chosen in ADMIN_LOCALES:
        return chosen
    if session.get(SESSION_KEY) in ADMIN_LOCALES:
        return session[SESSION_KEY]
    return request.accept_languages.best_match(ADMIN_LOCALES) or "en"


def html_lang() -> str:
    """The ``lang`` attribute of an admin page: the language it is rendered in."""
    return str(get_locale() or "en")


def init_app(app: Flask) -> Babel:
    babel = Babel()
    babel.init_app(app, locale_selector=admin_locale, default_translation_directories=str(TRANSLATIONS))
    from vestnik.webapp.admin.base import duration, status_name

    app.jinja_env.globals["admin_html_lang"] = html_lang
    app.jinja_env.globals.update(status_name=status_name, duration=duration)
    app.jinja_env.globals.update(admin_locales=ADMIN_LOCALES, language_names=NAMES, language_short=SHORT)
    return babel
