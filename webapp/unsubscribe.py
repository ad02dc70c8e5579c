"""``/unsubscribe/<token>``: the marketing opt-out every marketing message links to.

- ``GET`` shows what the link does and one button; it never changes anything
  (mail scanners and link previews fetch URLs).
- ``POST`` turns off the client's marketing preference, cancels the marketing
  notifications still waiting for them, and records it in the audit log as
  ``client:<id>``.  It is what RFC 8058 one-click mail clients send
  (``List-Unsubscribe=One-Click``), without cookies or a CSRF token, so it is
  exempt from CSRF and authenticated by the signed token alone.  Repeating it
  is harmless.
"""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request

from vestnik.shared import locales
from vestnik.shared.models import AuditLog, Category, Client, utcnow
from vestnik.shared.unsubscribe import read_token
from vestnik.webapp.db import get_session
from vestnik.workers import notifications

bp = Blueprint("unsubscribe", __name__)

#: The page's words in every supported locale: the client reads it in their own (shared/locales.py).
WORDS: dict[str, dict[str, str]] = {
    "title": {"ru": "Отписка", "uz-latn": "Obunani bekor qilish", "en": "Unsubscribe"},
    "done": {"ru": "Вы отписаны от рассылок", "uz-latn": "Siz axborot xabarlariga obunani bekor qildingiz",
             "en": "You are unsubscribed"},
    "done_text": {"ru": "Новости и предложения больше не придут. Сервисные уведомления (отмены занятий, оплаты) "
                        "продолжат приходить.",
                  "uz-latn": "Yangiliklar va takliflar endi kelmaydi. Xizmat xabarlari (darslar bekor qilinishi, "
                             "toʻlovlar) kelishda davom etadi.",
                  "en": "You will no longer receive news and offers. Service messages (cancelled lessons, "
                        "payments) still reach you."},
    "ask": {"ru": "Отписаться от новостей и предложений?", "uz-latn": "Yangiliklar va takliflarga obunani "
                                                                   "bekor qilasizmi?",
            "en": "Unsubscribe from news and offers?"},
    "ask_text": {"ru": "Сервисные уведомления (отмены занятий, оплаты) продолжат приходить.",
                 "uz-latn": "Xizmat xabarlari (darslar bekor qilinishi, toʻlovlar) kelishda davom etadi.",
                 "en": "Service messages (cancelled lessons, payments) still reach you."},
    "button": {"ru": "Отписаться", "uz-latn": "Obunani bekor qilish", "en": "Unsubscribe"},
}


def _page(client: Client, token: str, done: bool) -> str:
    lang = locales.match(client.locale) or "ru"
    return render_template("unsubscribe.html", token=token, done=done, html_lang=lang,
                           w={key: locales.pick(words, lang) for key, words in WORDS.items()})


def _client(token: str) -> Client:
    from vestnik.webapp import get_settings

    client_id = read_token(get_settings().secret_key, token)
    client = get_session().get(Client, client_id) if client_id else None
    if client is None:
        abort(404)
    return client


@bp.get("/unsubscribe/<token>")
def page(token: str):
    client = _client(token)
    return _page(client, token, done=not client.allow_marketing_notifications)


@bp.post("/unsubscribe/<token>")
def one_click(token: str):
    db = get_session()
    client = _client(token)
    now = utcnow()
    was = client.allow_marketing_notifications
    client.allow_marketing_notifications = False
    client.updated_at = now
    canceled = notifications.cancel_category(db, client.id, Category.marketing.value,
                                             "the client unsubscribed from marketing", now)
    if was:  # counted for the last marketing message the client got (workers/reactions.py)
        from vestnik.workers.reactions import record_unsubscribe

        record_unsubscribe(db, client.id, now)
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    db.add(AuditLog(actor=f"client:{client.crm_id}", action="client.unsubscribe", object_type="client",
                    object_id=client.crm_id, details={"category": "marketing", "was_allowed": was,
                                                       "canceled_pending": canceled,
                                                       "via": "one-click" if one_click else "form"}))
    db.commit()
    return _page(client, token, done=True)
