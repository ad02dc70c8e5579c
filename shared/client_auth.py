"""Clients' one-time secrets: sign-in links and codes, Telegram connect tokens, sessions.

Every secret is random and stored only as ``HMAC(secret_key, purpose:secret)``:
a copy of the database signs no one in, and a secret made for one purpose
(a connect token) is worthless for another (a session).  One-time use is a
conditional UPDATE (``used_at IS NULL AND expires_at > now``), so two
concurrent uses cannot both succeed on either backend.

The throttle counts attempts per scope (an address or an IP) in an hour's
window, in ``attempt_counters`` (``shared/counters.py``: one atomic statement,
exact under parallel requests).  It counts unknown addresses exactly as known
ones, so its answers say nothing about who is a client.  A sign-in code's
wrong guesses are counted the same way on its row, before the code is
compared.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from vestnik.shared import counters
from vestnik.shared.models import ClientToken, ClientTokenPurpose

THROTTLE_WINDOW_S = 3600.0
#: wrong codes accepted for one challenge before it dies
MAX_CODE_ATTEMPTS = 5
CODE_DIGITS = 6
_NONCE_CHARS = 22  # token_urlsafe(16)
_SIG_BYTES = 15  # 20 base64url characters: a 42-character start parameter (Telegram allows 64)


def digest(secret_key: str, purpose: str | ClientTokenPurpose, raw: str) -> str:
    """The stored form of a secret: a keyed hash bound to its purpose."""
    purpose = getattr(purpose, "value", purpose)
    return hmac.new(secret_key.encode(), f"{purpose}:{raw}".encode(), hashlib.sha256).hexdigest()


def forget_expired(session: Session, client_id: int, now: datetime) -> None:
    """Delete dead secrets as new ones are made, so the table does not grow forever.

    The client's own at once; everyone's a day after expiry (an index range on
    ``expires_at``), which also covers clients who never come back.
    """
    session.execute(delete(ClientToken).where(ClientToken.client_id == client_id, ClientToken.expires_at < now))
    session.execute(delete(ClientToken).where(ClientToken.expires_at < now - timedelta(days=1)))


def new_secret() -> str:
    """A fresh one-time secret in clear (made for known and unknown addresses alike)."""
    return secrets.token_urlsafe(32)


def issue(session: Session, secret_key: str, client_id: int, purpose: ClientTokenPurpose, ttl_s: float,
          now: datetime, *, ip: str | None = None, raw: str | None = None) -> str:
    """Store a one-time secret for ``client_id`` (``raw``, or a new one); return it in clear."""
    forget_expired(session, client_id, now)
    raw = raw if raw is not None else new_secret()
    session.add(ClientToken(client_id=client_id, purpose=purpose.value, token_hash=digest(secret_key, purpose, raw),
                            created_at=now, expires_at=now + timedelta(seconds=ttl_s), ip=ip))
    return raw


def consume(session: Session, secret_key: str, purpose: ClientTokenPurpose, raw: str,
            now: datetime) -> ClientToken | None:
    """Use a secret once: the token row if it was valid and unused, else None."""
    if not raw or len(raw) > 200:
        return None
    token_hash = digest(secret_key, purpose, raw)
    used = session.execute(
        update(ClientToken)
        .where(ClientToken.token_hash == token_hash, ClientToken.purpose == purpose.value,
               ClientToken.used_at.is_(None), ClientToken.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if used != 1:
        return None
    return session.scalars(select(ClientToken).where(ClientToken.token_hash == token_hash)).one()


def find(session: Session, secret_key: str, purpose: ClientTokenPurpose, raw: str) -> ClientToken | None:
    """The row of a secret whatever its state (to tell "already used by you" from "unknown")."""
    if not raw or len(raw) > 200:
        return None
    return session.scalars(
        select(ClientToken).where(ClientToken.token_hash == digest(secret_key, purpose, raw),
                                  ClientToken.purpose == purpose.value)
    ).first()


# ------------------------------------------------------------------ codes by the bot


def new_code() -> tuple[str, str]:
    """A (challenge, code) pair in clear.  The challenge stays in the browser, the code goes to the bot."""
    return secrets.token_urlsafe(24), f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def store_code(session: Session, secret_key: str, client_id: int, challenge: str, code: str, ttl_s: float,
               now: datetime, *, ip: str | None = None) -> None:
    """Keep the hashes of a (challenge, code) pair for ``client_id``, so that ``consume_code`` can check it."""
    forget_expired(session, client_id, now)
    purpose = ClientTokenPurpose.sign_in_code
    session.add(ClientToken(
        client_id=client_id, purpose=purpose.value, token_hash=digest(secret_key, purpose, challenge),
        code_hash=digest(secret_key, purpose, f"{challenge}:{code}"), created_at=now,
        expires_at=now + timedelta(seconds=ttl_s), ip=ip,
    ))


def issue_code(session: Session, secret_key: str, client_id: int | None, ttl_s: float, now: datetime,
               *, ip: str | None = None) -> tuple[str, str]:
    """A (challenge, code) pair, stored for ``client_id``.

    With ``client_id`` None nothing is stored (an unknown address gets a
    challenge that no code will ever satisfy: the same page either way).
    """
    challenge, code = new_code()
    if client_id is not None:
        store_code(session, secret_key, client_id, challenge, code, ttl_s, now, ip=ip)
    return challenge, code


def consume_code(session: Session, secret_key: str, challenge: str, code: str, now: datetime) -> int | None:
    """The client id if ``code`` answers ``challenge`` (once); None otherwise.

    Every try counts against the challenge *before* the code is compared, in
    one conditional UPDATE: after MAX_CODE_ATTEMPTS tries it is dead even for
    the right code, however many guesses arrive in parallel, so six digits
    cannot be guessed.
    """
    purpose = ClientTokenPurpose.sign_in_code
    row = find(session, secret_key, purpose, challenge)
    if row is None or row.used_at is not None or row.expires_at <= now:
        return None
    tried = session.execute(
        update(ClientToken)
        .where(ClientToken.id == row.id, ClientToken.used_at.is_(None),
               ClientToken.failed_attempts < MAX_CODE_ATTEMPTS)
        .values(failed_attempts=ClientToken.failed_attempts + 1)
        .returning(ClientToken.failed_attempts)
        .execution_options(synchronize_session=False)
    ).scalar()
    if tried is None:  # out of tries (or used meanwhile)
        return None
    given = digest(secret_key, purpose, f"{challenge}:{code.strip()}")
    if not hmac.compare_digest(given, row.code_hash or ""):
        return None
    used = session.execute(
        update(ClientToken)
        .where(ClientToken.id == row.id, ClientToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    return row.client_id if used == 1 else None


# ------------------------------------------------------------------ Telegram deep links


def _signature(secret_key: str, nonce: str) -> str:
    mac = hmac.new(secret_key.encode(), f"telegram-connect:{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:_SIG_BYTES]).decode().rstrip("=")


def issue_connect_token(session: Session, secret_key: str, client_id: int, ttl_s: float, now: datetime) -> str:
    """A signed one-time start parameter: ``nonce + signature`` (42 characters of [A-Za-z0-9_-])."""
    forget_expired(session, client_id, now)
    nonce = secrets.token_urlsafe(16)
    purpose = ClientTokenPurpose.telegram_connect
    session.add(ClientToken(client_id=client_id, purpose=purpose.value, token_hash=digest(secret_key, purpose, nonce),
                            created_at=now, expires_at=now + timedelta(seconds=ttl_s)))
    return nonce + _signature(secret_key, nonce)


def connect_nonce(secret_key: str, token: str) -> str | None:
    """The nonce of a well-signed connect token, else None (a forgery costs no database query)."""
    nonce, signature = token[:_NONCE_CHARS], token[_NONCE_CHARS:]
    if len(nonce) != _NONCE_CHARS or not signature:
        return None
    if not hmac.compare_digest(signature, _signature(secret_key, nonce)):
        return None
    return nonce


# ------------------------------------------------------------------ throttling


def address_scope(secret_key: str, address: str) -> str:
    # Keyed hash: the attempts table does not become a list of addresses people typed.
    return "address:" + digest(secret_key, "throttle", address.strip().lower())[:40]


def ip_scope(ip: str | None) -> str:
    return f"ip:{(ip or 'unknown')[:64]}"


def over_limit(session: Session, limits: list[tuple[str, int]], now: datetime,
               window_s: float = THROTTLE_WINDOW_S) -> bool:
    """Count this attempt in every scope; True when any scope is past its limit (the attempt is refused).

    Counting comes first and is one statement per scope (``shared/counters.py``),
    so exactly ``limit`` attempts per window pass however many arrive at once.
    """
    over = False
    for scope, limit in limits:
        over = counters.hit(session, scope, window_s=window_s, now=now).over(limit) or over
    counters.forget_expired(session, now)  # the table holds about one window of scopes
    return over
