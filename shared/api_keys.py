"""API keys: made once, shown once, stored as SHA-256, revocable.

A key is ``vk_`` and 43 random URL-safe characters (256 bits).  That much
randomness needs no slow password hash: SHA-256 of the key is its lookup
value, and the database never holds anything that would let a reader call
the API.  Every use is attributable: the key's :attr:`ApiKey.actor`
(``api_key:<id>``) is the initiator of the events it emits and the actor of
the audit rows of what it changes.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vestnik.shared import bounds
from vestnik.shared.models import ApiKey, AuditLog, utcnow

PREFIX = "vk_"
#: last_used_at is written at most this often per key (not on every request)
TOUCH_EVERY = timedelta(minutes=1)


def digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8", "replace")).hexdigest()


def create(session: Session, name: str, actor: str) -> tuple[ApiKey, str]:
    """A new key named ``name``; returns the row and the key itself (the only time it exists in clear)."""
    name = bounds.text(name, "name", min_chars=1, max_chars=100)
    raw = PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, prefix=raw[:8], key_hash=digest(raw), created_by=actor, created_at=utcnow())
    session.add(key)
    session.flush()
    session.add(AuditLog(actor=actor, action="api_key.create", object_type="api_key", object_id=str(key.id),
                         details={"name": name, "prefix": key.prefix}))
    return key, raw


def revoke(session: Session, key_id: int, actor: str) -> ApiKey | None:
    """Revoke a key (its next request gets 403); None when there is no such key."""
    key = session.get(ApiKey, key_id)
    if key is None:
        return None
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        key.revoked_by = actor
        session.add(AuditLog(actor=actor, action="api_key.revoke", object_type="api_key", object_id=str(key.id),
                             details={"name": key.name, "prefix": key.prefix}))
    return key


def find(session: Session, raw_key: str) -> ApiKey | None:
    """The key row for a presented key (revoked or not), or None."""
    if not raw_key.startswith(PREFIX) or len(raw_key) > 100:
        return None
    return session.scalars(select(ApiKey).where(ApiKey.key_hash == digest(raw_key))).first()


def touch(session: Session, key: ApiKey, now: datetime | None = None) -> None:
    """Note the key's use, at most once a minute (a conditional UPDATE: concurrent requests write once)."""
    now = now or utcnow()
    if key.last_used_at is not None and now - key.last_used_at < TOUCH_EVERY:
        return
    session.execute(update(ApiKey).where(ApiKey.id == key.id,
                                         (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < now - TOUCH_EVERY))
                    .values(last_used_at=now).execution_options(synchronize_session=False))
