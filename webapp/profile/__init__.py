"""The client's profile at /me: passwordless sign-in, history, preferences, Telegram.

Isolation is structural: no /me URL or form carries a client id.  Who the
client is comes only from the session (a one-time-issued, hashed ``session``
token, see ``vestnik.shared.client_auth``), and every query for their data goes
through :func:`own_notifications`, which filters by that client.  A URL with
another client's notification id therefore finds nothing and answers 404
(``tests/integration/test_profile.py`` walks the URL map to prove it).

Sign-in: a link by email or a code by the Telegram bot (``messenger.py``
explains why those are sent at once rather than queued).  The same answer is
given whether an address belongs to a client or not; attempts are throttled
per address and per IP.  An emailed link opens a confirmation page whose
button signs in (a GET never consumes it: mail scanners prefetch links).
Links use ``VESTNIK_PUBLIC_URL``, never the request's Host header, which an
attacker could set to receive a victim's link.
"""

from __future__ import annotations

import functools
import re
import threading
from datetime import datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, abort, current_app, flash, g, jsonify, redirect, render_template, request, session
from flask import url_for as flask_url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from vestnik.shared import bounds, client_auth, locales
from vestnik.shared.audit import client_action as audit
from vestnik.shared.config import Settings
from vestnik.shared.models import Client, ClientAddress, ClientToken, ClientTokenPurpose, Notification, utcnow
from vestnik.webapp.db import get_session, session_factory
from vestnik.webapp.profile.i18n import LANGUAGES, pick_language, translate
from vestnik.webapp.profile.messenger import SignInMessenger, code_telegram, link_email
from vestnik.workers.channels.email import EmailChannel

bp = Blueprint("profile", __name__, url_prefix="/me")

#: a client signs in with the address they have on this channel (a link or a code is sent there)
SIGN_IN_CHANNEL = EmailChannel.name

SESSION_KEY = "vestnik_client"
CHALLENGE_KEY = "vestnik_sign_in_challenge"
TG_PENDING_KEY = "vestnik_tg_connect"  # (token row id, deep link) while waiting for Start
LANG_KEY = "vestnik_lang"
PAGE_SIZE = 20
MAX_PAGE = 500
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
PREFERENCES = {
    "telegram": "notifications_telegram_enabled",
    "email": "notifications_email_enabled",
    "service": "allow_service_notifications",
    "marketing": "allow_marketing_notifications",
}


def settings() -> Settings:
    return current_app.extensions["vestnik_settings"]


_messenger_lock = threading.Lock()


def messenger() -> SignInMessenger:
    """The app's sign-in messenger, made on first use (after gunicorn's fork, so its threads are this process's)."""
    with _messenger_lock:
        found = current_app.extensions.get("vestnik_sign_in_messenger")
        if found is None:
            found = SignInMessenger(settings(), session_factory())
            current_app.extensions["vestnik_sign_in_messenger"] = found
        return found


def public_url(endpoint: str, **values: Any) -> str:
    return settings().public_url.rstrip("/") + flask_url_for(endpoint, **values)


def t(key: str, **values: Any) -> str:
    return translate(key, g.get("lang", "ru"), **values)


def _minutes() -> int:
    return max(1, round(settings().client_token_ttl_s / 60))


def _ip() -> str:
    return request.remote_addr or "unknown"


# ------------------------------------------------------------------ who is signed in


@bp.before_request
def _load_client() -> None:
    g.client = None
    raw = session.get(SESSION_KEY)
    if raw:
        db = get_session()
        row = client_auth.find(db, settings().secret_key, ClientTokenPurpose.session, raw)
        if row is not None and row.used_at is None and row.expires_at > utcnow():
            g.client = db.get(Client, row.client_id)
            g.session_row_id = row.id
    g.lang = pick_language(g.client.locale if g.client is not None else session.get(LANG_KEY),
                           *request.accept_languages.values())


@bp.after_request
def _no_store(response):
    response.headers["Cache-Control"] = "no-store"  # personal pages: no shared or back-button caches
    return response


@bp.context_processor
def _template_helpers() -> dict[str, Any]:
    return {"t": t, "lang": g.get("lang", "ru"), "html_lang": g.get("lang", "ru"), "client": g.get("client"),
            "languages": LANGUAGES, "language_names": locales.NAMES, "language_short": locales.SHORT,
            "minutes": _minutes()}


@bp.errorhandler(404)
def _not_found(error: Exception):
    return render_template("profile/not_found.html"), 404


def signed_in(view):
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any):
        if g.client is None:
            return redirect(flask_url_for("profile.login"))
        return view(*args, **kwargs)

    return wrapper


def _start_session(db: Session, client_id: int, how: str) -> Any:
    session.clear()  # nothing from before the sign-in survives (session fixation)
    raw = client_auth.issue(db, settings().secret_key, client_id, ClientTokenPurpose.session,
                            settings().client_session_ttl_s, utcnow(), ip=_ip())
    audit(db, client_id, "client.signed_in", {"method": how, "ip": _ip()})
    db.commit()
    session[SESSION_KEY] = raw
    session.permanent = True
    return redirect(flask_url_for("profile.index"))


# ------------------------------------------------------------------ sign-in


def _find_client(db: Session, email: str) -> Client | None:
    owner = select(ClientAddress.client_id).where(ClientAddress.channel == SIGN_IN_CHANNEL,
                                                  func.lower(ClientAddress.address) == email)
    # The addresses in the same statement: a found client must cost the statements a stranger costs.
    return db.scalars(select(Client).options(joinedload(Client.addresses)).where(Client.id.in_(owner))
                      .order_by(Client.id)).unique().first()


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if g.client is not None:
            return redirect(flask_url_for("profile.index"))
        return render_template("profile/login.html")
    email = (request.form.get("email") or "").strip().lower()
    method = request.form.get("method", "link")
    if not _EMAIL.match(email) or method not in ("link", "code"):
        return render_template("profile/login.html", email=email, error=t("email_invalid")), 400
    db = get_session()
    now = utcnow()
    key = settings().secret_key
    limits = [(client_auth.address_scope(key, email), settings().client_sign_in_per_address),
              (client_auth.ip_scope(_ip()), settings().client_sign_in_per_ip)]
    over = client_auth.over_limit(db, limits, now)
    db.commit()  # counted, whatever happens next
    if over:
        return render_template("profile/login.html", email=email, error=t("throttled")), 429
    # From here the request does the same work for any address (one look-up, the same secrets made, a
    # hand-off to the background pool, which stores the secret and sends it): its time tells nothing.
    client = _find_client(db, email)
    ttl_s = settings().client_token_ttl_s
    ip = _ip()
    if method == "link":
        raw = client_auth.new_secret()
        if client is not None:
            message = link_email(public_url("profile.login_link", token=raw), _minutes(), pick_language(client.locale),
                                 client.name)
            messenger().send(client.id, "email", message, store=functools.partial(
                client_auth.issue, secret_key=key, client_id=client.id, purpose=ClientTokenPurpose.sign_in_link,
                ttl_s=ttl_s, now=now, ip=ip, raw=raw))
        return render_template("profile/login.html", email=email, notice=t("link_sent", minutes=_minutes()))
    challenge, code = client_auth.new_code()
    if client is not None and client.telegram_chat_id:
        messenger().send(client.id, "telegram", code_telegram(code, _minutes(), pick_language(client.locale)),
                         store=functools.partial(client_auth.store_code, secret_key=key, client_id=client.id,
                                                 challenge=challenge, code=code, ttl_s=ttl_s, now=now, ip=ip))
    session[CHALLENGE_KEY] = challenge
    flash(t("code_sent", minutes=_minutes()), "info")
    return redirect(flask_url_for("profile.login_code"))


@bp.route("/login/code", methods=["GET", "POST"])
def login_code():
    challenge = session.get(CHALLENGE_KEY)
    if not challenge:
        flash(t("code_missing"), "error")
        return redirect(flask_url_for("profile.login"))
    if request.method == "GET":
        return render_template("profile/code.html")
    db = get_session()
    now = utcnow()
    over = client_auth.over_limit(db, [(client_auth.ip_scope(_ip()), settings().client_sign_in_per_ip)], now)
    db.commit()
    if over:
        return render_template("profile/code.html", error=t("throttled")), 429
    client_id = client_auth.consume_code(db, settings().secret_key, challenge,
                                         (request.form.get("code") or "")[:20], now)
    if client_id is None:
        db.commit()  # the try is counted on the challenge
        return render_template("profile/code.html", error=t("code_wrong")), 401
    return _start_session(db, client_id, "telegram_code")


@bp.route("/login/t/<token>", methods=["GET", "POST"])
def login_link(token: str):
    db = get_session()
    key = settings().secret_key
    if request.method == "GET":
        row = client_auth.find(db, key, ClientTokenPurpose.sign_in_link, token)
        valid = row is not None and row.used_at is None and row.expires_at > utcnow()
        return render_template("profile/link.html", valid=valid, token=token), 200 if valid else 410
    row = client_auth.consume(db, key, ClientTokenPurpose.sign_in_link, token, utcnow())
    if row is None:
        return render_template("profile/link.html", valid=False, token=token), 410
    return _start_session(db, row.client_id, "email_link")


@bp.post("/logout")
def logout():
    if g.client is not None:
        db = get_session()
        row = db.get(ClientToken, g.session_row_id)
        if row is not None and row.used_at is None:
            row.used_at = utcnow()  # this session is dead even if someone kept a copy of the cookie
        audit(db, g.client.id, "client.signed_out")
        db.commit()
    lang = g.lang
    session.clear()
    session[LANG_KEY] = lang
    flash(translate("signed_out", lang), "info")
    return redirect(flask_url_for("profile.login"))


@bp.post("/language")
def language():
    lang = request.form.get("lang", "")
    if lang in LANGUAGES:
        if g.client is not None and g.client.locale != lang:
            db = get_session()
            audit(db, g.client.id, "client.preferences", {"changes": {"locale": [g.client.locale, lang]}})
            g.client.locale = lang
            db.commit()
        session[LANG_KEY] = lang
    return redirect(_local(request.form.get("next")) or flask_url_for("profile.index"))


def _local(target: str | None) -> str | None:
    """A path under /me only: no open redirect through the switcher."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/me") or "\\" in target:
        return None
    return target


# ------------------------------------------------------------------ the profile


def own_notifications(client: Client):
    """The one query for a client's notifications: everything in /me goes through it."""
    return select(Notification).where(Notification.recipient_id == client.id)


@bp.get("/")
@signed_in
def index():
    page = bounds.page(request.args.get("page"), maximum=MAX_PAGE)
    db = get_session()
    rows = db.scalars(
        own_notifications(g.client).order_by(Notification.created_at.desc(), Notification.id.desc())
        .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)
    ).all()
    items = [_item(n) for n in rows[:PAGE_SIZE]]
    return render_template("profile/index.html", items=items, page=page, has_next=len(rows) > PAGE_SIZE,
                           telegram=_telegram_state(db), quiet=_quiet_state(db, g.client))


def _quiet_state(db: Session, client: Client) -> dict[str, Any]:
    """The client's own quiet hours, or the marketing default they follow (``workers/quiet_hours.py``)."""
    from vestnik.workers import quiet_hours

    own = quiet_hours.own_window(client.quiet_hours_start_min, client.quiet_hours_end_min)
    default = quiet_hours.load_policies(db)["marketing"].window
    window = own or default
    return {"own": own is not None, "start": quiet_hours.hhmm(window.start_min),
            "end": quiet_hours.hhmm(window.end_min), "default": default.label()}


def _quiet_changes(client: Client, changes: dict[str, list[Any]]) -> bool:
    """Apply the form's quiet hours to ``client``; False when a time is not understood (nothing changed)."""
    from vestnik.workers import quiet_hours

    if request.form.get("quiet_own") != "on":
        start = end = None
    else:
        try:
            window = quiet_hours.Window.parse(request.form.get("quiet_start", ""), request.form.get("quiet_end", ""))
        except ValueError:
            return False
        start, end = window.start_min, window.end_min
    for attr, new in (("quiet_hours_start_min", start), ("quiet_hours_end_min", end)):
        if getattr(client, attr) != new:
            changes[attr] = [getattr(client, attr), new]
            setattr(client, attr, new)
    return True


@bp.get("/notifications/<int:notification_id>")
@signed_in
def notification(notification_id: int):
    n = get_session().scalars(own_notifications(g.client).where(Notification.id == notification_id)).first()
    if n is None:
        abort(404)
    return render_template("profile/notification.html", item=_item(n, full=True))


@bp.post("/settings")
@signed_in
def preferences():
    client: Client = g.client
    changes: dict[str, list[Any]] = {}
    for field, attr in PREFERENCES.items():
        if field == "telegram" and not client.telegram_chat_id:
            continue  # the switch is disabled until Telegram is connected: keep what is stored
        new = request.form.get(field) == "on"
        if getattr(client, attr) != new:
            changes[attr] = [getattr(client, attr), new]
            setattr(client, attr, new)
    if "quiet_start" in request.form and not _quiet_changes(client, changes):
        get_session().rollback()
        flash(t("quiet_invalid"), "error")
        return redirect(flask_url_for("profile.index") + "#settings")
    lang = request.form.get("lang")
    if lang in LANGUAGES and lang != client.locale:
        changes["locale"] = [client.locale, lang]
        client.locale = lang
    db = get_session()
    if changes:
        audit(db, client.id, "client.preferences", {"changes": changes})
        db.commit()
        g.lang = pick_language(client.locale)
        flash(t("saved"), "success")
    else:
        flash(t("nothing_changed"), "info")
    return redirect(flask_url_for("profile.index") + "#settings")


# ------------------------------------------------------------------ Telegram


def _telegram_state(db: Session) -> dict[str, Any]:
    client: Client = g.client
    waiting = None
    pending = session.get(TG_PENDING_KEY)
    if pending:
        row = db.get(ClientToken, pending[0])
        if row is not None and row.client_id == client.id and row.used_at is None and row.expires_at > utcnow():
            waiting = pending[1]
        else:
            session.pop(TG_PENDING_KEY, None)
    return {"connected": bool(client.telegram_chat_id), "unreachable": client.telegram_unreachable_reason,
            "link": waiting, "configured": bool(settings().telegram_bot_username and settings().telegram_token)}


@bp.post("/telegram/connect")
@signed_in
def telegram_connect():
    s = settings()
    if not (s.telegram_bot_username and s.telegram_token):
        flash(t("tg_not_configured"), "error")
        return redirect(flask_url_for("profile.index") + "#telegram")
    db = get_session()
    token = client_auth.issue_connect_token(db, s.secret_key, g.client.id, s.client_token_ttl_s, utcnow())
    db.flush()
    row = client_auth.find(db, s.secret_key, ClientTokenPurpose.telegram_connect,
                           client_auth.connect_nonce(s.secret_key, token) or "")
    row_id = row.id if row is not None else None
    audit(db, g.client.id, "client.telegram_link_issued")
    db.commit()
    # The demo points the deep link at its stand-in for the Telegram app (there is no real Telegram).
    base = current_app.config.get("TELEGRAM_LINK_BASE", "https://t.me")
    session[TG_PENDING_KEY] = [row_id, f"{base}/{s.telegram_bot_username}?start={token}"]
    return redirect(flask_url_for("profile.index") + "#telegram")


@bp.get("/telegram/status")
@signed_in
def telegram_status():
    """Polled by profile.js while the page waits for Start: has the pending link been used?"""
    pending = session.get(TG_PENDING_KEY)
    used = False
    if pending:
        row = get_session().get(ClientToken, pending[0])
        used = row is not None and row.client_id == g.client.id and row.used_at is not None
    return jsonify({"connected": bool(g.client.telegram_chat_id) and used})


@bp.post("/telegram/disconnect")
@signed_in
def telegram_disconnect():
    client: Client = g.client
    if client.telegram_chat_id:
        db = get_session()
        audit(db, client.id, "client.telegram_disconnected", {"chat_id": client.telegram_chat_id})
        client.telegram_chat_id = None
        client.telegram_unreachable_reason = None
        db.commit()
        flash(t("tg_disconnected"), "info")
    return redirect(flask_url_for("profile.index") + "#telegram")


# ------------------------------------------------------------------ presentation


class _Text(HTMLParser):
    """Visible text of Telegram HTML or an email's HTML part (shown escaped, never as markup)."""

    _BREAKS = {"br", "p", "div", "li", "tr", "h1", "h2", "h3", "blockquote", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip = max(0, self._skip - 1)
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def plain_text(body: str | None) -> str:
    if not body:
        return ""
    parser = _Text()
    parser.feed(body)
    parser.close()
    text = re.sub(r"[ \t]+", " ", "".join(parser.parts))
    return re.sub(r"\n\s*\n+", "\n\n", text).strip()


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    from babel.dates import format_datetime

    try:
        zone = ZoneInfo(g.client.timezone or settings().default_timezone)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    try:
        return format_datetime(value, "short", tzinfo=zone, locale=locales.babel(g.lang))
    except (OverflowError, ValueError):
        # A time at the edge of datetime's range (stored before times were bounded at emit):
        # shown as stored, so one odd row never takes the whole page down.
        return value.strftime("%Y-%m-%d %H:%M UTC")


def _item(n: Notification, *, full: bool = False) -> dict[str, Any]:
    text = plain_text(n.body)
    if not full and len(text) > 280:
        text = text[:279].rstrip() + "…"
    waiting = n.status == "pending" and n.send_at is not None and n.send_at > utcnow()
    return {
        "id": n.id, "channel": n.channel, "status": n.status, "sent": n.status == "sent", "subject": n.subject,
        "text": text, "when": _when(n.sent_at or n.created_at),
        "scheduled": _when(n.send_at) if waiting else None,
    }


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
