"""Files in the admin: upload a file that rules and broadcasts attach (``file:<id>``), list, download, delete.

The file is checked at upload (size under every channel's limit, a type a person
opens whose first bytes match its name: ``workers/attachments.check_upload``) and
kept in the database (``stored_files``; docs/attachments.md says why).  Admins
upload and delete; support looks.  A file still named by a draft or running
broadcast or by a rule is not deleted: the page says which.
"""

from __future__ import annotations

from flask import Response, abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from sqlalchemy import select
from wtforms import HiddenField
from wtforms.validators import DataRequired

from vestnik.shared.attachment_refs import ATTACHMENT_KEY
from vestnik.shared.models import Broadcast, BroadcastStatus, RuleOverride, StoredFile
from vestnik.webapp.admin.base import SecureView, audit, can_write
from vestnik.webapp.boundaries import LARGE_BODIES
from vestnik.webapp.db import get_session
from vestnik.workers import attachments

#: the upload's request body: the file plus the form's few fields
UPLOAD_BODY_BYTES = attachments.upload_limit()[0] + 64 * 1024
LARGE_BODIES["files.index"] = UPLOAD_BODY_BYTES
_LIVE = (BroadcastStatus.draft.value, BroadcastStatus.scheduled.value, BroadcastStatus.testing.value,
         BroadcastStatus.running.value, BroadcastStatus.paused.value)


class UploadForm(FlaskForm):
    upload = FileField(_l("File"))


class DeleteForm(FlaskForm):
    file_id = HiddenField(validators=[DataRequired()])


def users_of(db, file_id: int) -> list[str]:
    """What still names ``file:<id>``: live broadcasts and rules."""
    ref = f"file:{file_id}"
    found = [f"broadcast {b.id} ({b.name})" for b in db.scalars(select(Broadcast).where(Broadcast.status.in_(_LIVE)))
             if (b.data or {}).get(ATTACHMENT_KEY) == ref]
    found += [f"rule {r.event_type}" for r in db.scalars(select(RuleOverride))
              if ref in (r.attachments or {}).values()]
    return found


class FilesView(SecureView):
    @expose("/", methods=["GET", "POST"])
    def index(self):
        db = get_session()
        form = UploadForm()
        if request.method == "POST":
            if not can_write():
                abort(403)
            if form.validate_on_submit() and getattr(form.upload.data, "filename", ""):
                try:
                    row = attachments.store_upload(db, form.upload.data.filename, form.upload.data.read(),
                                                   current_user.actor)
                except ValueError as exc:
                    flash(_("Not uploaded: %(error)s", error=exc), "error")
                else:
                    audit("file.upload", "file", row.id, {"name": row.name, "type": row.mime_type, "bytes": row.size,
                                                          "sha256": row.sha256})
                    db.commit()
                    flash(_("Uploaded %(name)s: attach it as file:%(id)s", name=row.name, id=row.id), "success")
                    return redirect(url_for(".index"))
            elif not form.errors:
                flash(_("Not uploaded: choose a file"), "error")
        files = db.scalars(select(StoredFile).order_by(StoredFile.id.desc()).limit(500)).all()
        return self.render("admin/files.html", form=form, files=files, delete_form=DeleteForm(),
                           can_write=can_write(), max_mb=attachments.upload_limit()[0] // attachments.MB,
                           limits={cls.title or cls.name: cls.max_attachment_bytes // attachments.MB
                                   for cls in attachments.file_channels()},
                           size_text=attachments.size_text)

    @expose("/<int:file_id>")
    def download(self, file_id: int):
        row = get_session().get(StoredFile, file_id)
        if row is None:
            abort(404)
        return Response(row.content, mimetype=row.mime_type,
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{_quoted(row.name)}",
                                 "X-Content-Type-Options": "nosniff"})

    @expose("/delete", methods=["POST"])
    def delete(self):
        if not can_write():
            abort(403)
        form = DeleteForm()
        if form.validate_on_submit() and form.file_id.data.isascii() and form.file_id.data.isdigit():
            db = get_session()
            row = db.get(StoredFile, int(form.file_id.data))
            if row is not None:
                users = users_of(db, row.id)
                if users:
                    flash(_("Not deleted: file:%(id)s is attached by %(users)s", id=row.id, users=", ".join(users)),
                          "error")
                else:
                    audit("file.delete", "file", row.id, {"name": row.name, "sha256": row.sha256})
                    db.delete(row)
                    db.commit()
                    flash(_("Deleted %(name)s", name=row.name), "success")
        return redirect(url_for(".index"))


def _quoted(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")
