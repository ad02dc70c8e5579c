"""API keys in the admin: create (the key is shown once), list, revoke.  Admins only; support looks."""

from __future__ import annotations

from flask import abort, flash, redirect, url_for
from flask_admin import expose
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import HiddenField, StringField
from wtforms.validators import DataRequired, Length

from vestnik.shared import api_keys
from vestnik.shared.models import ApiKey
from vestnik.webapp.admin.base import SecureView, can_write
from vestnik.webapp.db import get_session


class CreateKeyForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=100)],
                       description=_l("Who uses it, e.g. the CRM's production server"))


class RevokeKeyForm(FlaskForm):
    key_id = HiddenField(validators=[DataRequired()])


class ApiKeyView(SecureView):
    @expose("/", methods=["GET", "POST"])
    def index(self):
        db = get_session()
        form = CreateKeyForm()
        created = None
        if form.validate_on_submit():
            if not can_write():
                abort(403)
            key, created = api_keys.create(db, form.name.data, current_user.actor)
            db.commit()
            form = CreateKeyForm(formdata=None)
        keys = db.scalars(select(ApiKey).order_by(ApiKey.id.desc())).all()
        return self.render("admin/api_keys.html", form=form, keys=keys, created=created,
                           revoke_form=RevokeKeyForm(), can_write=can_write())

    @expose("/revoke", methods=["POST"])
    def revoke(self):
        if not can_write():
            abort(403)
        form = RevokeKeyForm()
        if form.validate_on_submit() and form.key_id.data.isascii() and form.key_id.data.isdigit():
            db = get_session()
            key = api_keys.revoke(db, int(form.key_id.data), current_user.actor)
            db.commit()
            if key is not None:
                flash(gettext("Revoked %(key)s. Its next request gets 403.", key=key), "success")
        return redirect(url_for(".index"))
