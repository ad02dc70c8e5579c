"""My account: where "send test to me" goes (the sign-in email, and a Telegram chat id), and the
language the admin is shown in (webapp/admin/i18n.py)."""

from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask_admin import expose
from flask_babel import force_locale, gettext
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import AnyOf, Optional, Regexp

from vestnik.shared.locales import ADMIN_LOCALES, NAMES
from vestnik.shared.models import AdminUser
from vestnik.webapp.admin.base import SecureView, audit
from vestnik.webapp.admin.i18n import admin_locale
from vestnik.webapp.db import get_session


class AccountForm(FlaskForm):
    telegram_chat_id = StringField(
        _l("Telegram chat id"),
        validators=[Optional(), Regexp(r"^-?[0-9]{1,16}$", message=_l("digits only (0-9), e.g. 123456789"))],
        description=_l("Write to the bot, then take your chat id from a received update (or ask @userinfobot)."))
    locale = SelectField(_l("Language of the admin"), choices=[(code, NAMES[code]) for code in ADMIN_LOCALES],
                         validators=[Optional(), AnyOf(ADMIN_LOCALES)], validate_choice=False,
                         description=_l("The language you see the admin in; clients get their own."))


class AccountView(SecureView):
    @expose("/", methods=["GET", "POST"])
    def index(self):
        db = get_session()
        user = db.get(AdminUser, current_user.user_id)
        form = AccountForm(obj=user)
        if request.method == "GET":
            form.locale.data = user.locale or admin_locale()
        if form.validate_on_submit():
            changes = {"telegram_chat_id": [user.telegram_chat_id,
                                            (form.telegram_chat_id.data or "").strip() or None],
                       "locale": [user.locale, form.locale.data or user.locale]}
            user.telegram_chat_id, user.locale = changes["telegram_chat_id"][1], changes["locale"][1]
            audit("admin.account", "admin_user", user.id, {k: v for k, v in changes.items() if v[0] != v[1]})
            db.commit()
            with force_locale(user.locale or admin_locale()):  # the confirmation in the language just chosen
                flash(gettext("Saved."), "success")
            return redirect(url_for(".index"))
        return self.render("admin/account.html", form=form, user=user)
