"""My account: where "send test to me" goes (the sign-in email, and a Telegram chat id)."""

from __future__ import annotations

from flask import flash, redirect, url_for
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import Optional, Regexp

from vestnik.shared.models import AdminUser
from vestnik.webapp.admin.base import SecureView, audit
from vestnik.webapp.db import get_session


class AccountForm(FlaskForm):
    telegram_chat_id = StringField(
        "Telegram chat id",
        validators=[Optional(), Regexp(r"^-?[0-9]{1,16}$", message="digits only (0-9), e.g. 123456789")],
        description="Write to the bot, then take your chat id from a received update (or ask @userinfobot).")


class AccountView(SecureView):
    @expose("/", methods=["GET", "POST"])
    def index(self):
        db = get_session()
        user = db.get(AdminUser, current_user.user_id)
        form = AccountForm(obj=user)
        if form.validate_on_submit():
            old = user.telegram_chat_id
            user.telegram_chat_id = (form.telegram_chat_id.data or "").strip() or None
            audit("admin.account", "admin_user", user.id, {"telegram_chat_id": [old, user.telegram_chat_id]})
            db.commit()
            flash("Saved.", "success")
            return redirect(url_for(".index"))
        return self.render("admin/account.html", form=form, user=user)
