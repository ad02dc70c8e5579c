"""Groups and channels in the admin: register one (verified through the bot), see whether the bot may
post and whether it is still there, choose the events that post there, and post a template now or at
a time.  A post is a notification like any other (``workers/chats.py``): the history shows it.

Every form is a ``FlaskForm`` (CSRF); the support role looks and changes nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flask import abort, current_app, flash, redirect, request, url_for
from flask_admin import expose
from flask_babel import gettext
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select

from vestnik.shared import bounds
from vestnik.shared.bounds import BoundsError
from vestnik.shared.events import all_event_types
from vestnik.shared.models import Chat, NotificationTemplate, utcnow
from vestnik.webapp.admin.base import SecureView, audit, can_write
from vestnik.webapp.db import get_session
from vestnik.workers import chats, notifications

#: the template data a post may carry (a JSON object), in characters
MAX_DATA_CHARS = 20_000


def _channel():
    """This process's channel that has groups and channels (Telegram), as the app built it."""
    built = current_app.extensions.get("vestnik_channels") or {}
    for channel in built.values():
        if getattr(channel, "supports_chats", False):
            return channel
    abort(404)


def _chat_or_404(raw: str) -> Chat:
    try:
        chat_id = bounds.identifier(raw, "chat")
    except BoundsError:
        abort(400)
    chat = get_session().get(Chat, chat_id)
    if chat is None:
        abort(404)
    return chat


def _writer() -> None:
    if not can_write():
        abort(403)
    if not FlaskForm().validate_on_submit():
        abort(400)


class ChatsView(SecureView):
    @expose("/")
    def index(self):
        db = get_session()
        items = db.scalars(select(Chat).order_by(Chat.title, Chat.id)).all()
        channel = _channel()
        codes = sorted(set(db.scalars(select(NotificationTemplate.code).where(
            NotificationTemplate.channel == channel.name, NotificationTemplate.is_active.is_(True)))))
        return self.render("admin/chats.html", chats=items, form=FlaskForm(), can_write=can_write(), codes=codes,
                           events=[e.name for e in all_event_types()],
                           history=lambda chat: url_for("notification.index_view", flt0_chat_equals=chat.address))

    @expose("/add", methods=["POST"])
    def add(self):
        _writer()
        ref = (request.form.get("ref") or "").strip()[:100]
        db = get_session()
        try:
            chat = chats.verify(db, _channel(), ref, actor=current_user.actor)
        except chats.ChatError as exc:
            db.rollback()
            flash(gettext("Not added: %(reason)s", reason=str(exc)), "error")
            return redirect(url_for(".index"))
        audit("chat.add", "chat", chat.id, {"address": chat.address, "title": chat.title, "kind": chat.kind,
                                             "bot_status": chat.bot_status, "can_post": chat.can_post})
        db.commit()
        if chat.can_post:
            flash(gettext("%(title)s is registered; the bot may post there.", title=chat.title), "success")
        else:
            flash(gettext("%(title)s is registered, but the bot may not post there (%(status)s): make it an "
                          "administrator who can post, then verify again.", title=chat.title,
                          status=chat.bot_status), "warning")
        return redirect(url_for(".index"))

    @expose("/<chat_id>/verify", methods=["POST"])
    def verify(self, chat_id: str):
        _writer()
        db = get_session()
        chat = _chat_or_404(chat_id)
        problem = chats.reverify(db, _channel(), chat, actor=current_user.actor)
        audit("chat.verify", "chat", chat.id, {"bot_status": chat.bot_status, "can_post": chat.can_post,
                                                "unreachable": problem})
        db.commit()
        if problem:
            flash(gettext("%(title)s is unreachable: %(reason)s", title=chat.title, reason=problem), "error")
        else:
            flash(gettext("%(title)s verified.", title=chat.title), "success")
        return redirect(url_for(".index"))

    @expose("/<chat_id>/remove", methods=["POST"])
    def remove(self, chat_id: str):
        _writer()
        db = get_session()
        chat = _chat_or_404(chat_id)
        canceled = notifications.cancel_chat(db, chat.channel, chat.address,
                                             "the chat was removed from the registry", utcnow())
        audit("chat.remove", "chat", chat.id, {"address": chat.address, "title": chat.title, "canceled": canceled})
        db.delete(chat)
        db.commit()
        flash(gettext("%(title)s removed; %(n)d post(s) still to be sent canceled; its posts stay in the history.",
                      title=chat.title, n=canceled), "success")
        return redirect(url_for(".index"))

    @expose("/<chat_id>/subscribe", methods=["POST"])
    def subscribe(self, chat_id: str):
        _writer()
        db = get_session()
        chat = _chat_or_404(chat_id)
        event = (request.form.get("event") or "").strip()
        code = (request.form.get("template") or "").strip()[:100]
        drop = (request.form.get("drop") or "").strip()
        subscriptions = dict(chat.subscriptions or {})
        if drop:
            subscriptions.pop(drop, None)
        elif event in {e.name for e in all_event_types()} and code:
            subscriptions[event] = code
        else:
            flash(gettext("Choose an event and a template."), "error")
            return redirect(url_for(".index"))
        audit("chat.events", "chat", chat.id, {"changes": {"events": [chat.subscriptions or {}, subscriptions]}})
        chat.subscriptions, chat.updated_at = subscriptions, utcnow()
        db.commit()
        flash(gettext("Events of %(title)s saved.", title=chat.title), "success")
        return redirect(url_for(".index"))

    @expose("/post", methods=["POST"])
    def post(self):
        _writer()
        db = get_session()
        try:
            ids = [bounds.identifier(raw, "chat") for raw in request.form.getlist("chat")[:100]]
        except BoundsError:
            abort(400)
        targets = db.scalars(select(Chat).where(Chat.id.in_(ids))).all() if ids else []
        code = (request.form.get("template") or "").strip()[:100]
        try:
            data = _data(request.form.get("data") or "")
            send_at = _moment(request.form.get("when") or "now", request.form.get("at") or "")
            made = chats.post(db, targets, code, data, send_at=send_at, initiator=current_user.actor)
        except chats.ChatError as exc:
            db.rollback()
            flash(gettext("Not posted: %(reason)s", reason=str(exc)), "error")
            return redirect(url_for(".index"))
        audit("chat.post", "notification", made[0] if made else None, {
            "template": code, "chats": [c.address for c in targets], "notifications": made,
            "send_at": send_at.isoformat() if send_at else "now"})
        db.commit()
        when = f"{send_at:%Y-%m-%d %H:%M} UTC" if send_at else gettext("now")
        flash(gettext("%(n)s post(s) of %(code)s queued (%(when)s).", n=len(made), code=code, when=when),
              "success")
        return redirect(url_for(".index"))


def _data(raw: str) -> dict:
    if not raw.strip():
        return {}
    if len(raw) > MAX_DATA_CHARS:
        raise chats.ChatError(f"template data: at most {MAX_DATA_CHARS} characters")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise chats.ChatError(f"template data is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise chats.ChatError("template data must be a JSON object, e.g. {\"title\": \"...\"}")
    return data


def _moment(when: str, at: str) -> datetime | None:
    if when != "at":
        return None
    try:
        moment = datetime.fromisoformat(at.strip()[:40])
    except ValueError:
        raise chats.ChatError("send at: a date and time (UTC), e.g. 2026-12-01 09:00") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment <= utcnow():
        raise chats.ChatError(f"send at: {moment:%Y-%m-%d %H:%M} UTC has passed; choose a later moment")
    return moment
