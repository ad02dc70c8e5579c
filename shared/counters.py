"""Attempt counters: exact limits under any number of parallel requests.

A limit (five wrong passwords, thirty sign-ins per IP an hour) only holds if
counting and deciding are one step.  Reading a count, adding one in Python
and writing it back lets 24 parallel requests each read 0 and write 1; so
every counter here is one row per scope, bumped by a single
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` that the database
serialises on the row: each caller gets its own number (1, 2, 3...), and
attempt ``limit + 1`` is refused however many arrive at once.

The caller counts *before* doing the work it limits (checking a password, a
code), so refused attempts never reach it.  A window starts at a scope's first
attempt and lasts ``window_s``; when it has passed, the next attempt starts a
new one at 1.  Scopes are opaque strings (keyed hashes of addresses, IPs):
the table holds no address anyone typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, literal, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vestnik.shared.models import AttemptCounter

_TABLE = AttemptCounter.__table__
_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@dataclass(frozen=True)
class Hit:
    """This attempt's number in its scope's window, and when the window ends."""

    count: int
    window_ends_at: datetime

    def over(self, limit: int) -> bool:
        return self.count > limit


def hit(session: Session, scope: str, *, window_s: float, now: datetime) -> Hit:
    """Count one attempt in ``scope``; return its number in the current window (one statement)."""
    insert = _INSERT[session.get_bind().dialect.name]
    column = _TABLE.c.window_ends_at
    ends = literal(now + timedelta(seconds=window_s), column.type)
    stmt = insert(_TABLE).values(scope=scope, count=1, window_ends_at=ends)
    expired = column <= literal(now, column.type)
    stmt = stmt.on_conflict_do_update(
        index_elements=[_TABLE.c.scope],
        set_={"count": case((expired, 1), else_=_TABLE.c.count + 1),
              "window_ends_at": case((expired, ends), else_=column)},
    ).returning(_TABLE.c.count, column)
    count, window_ends_at = session.execute(stmt).one()
    return Hit(int(count), window_ends_at)


def hold(session: Session, scope: str, *, until: datetime) -> None:
    """Keep a scope's window (and so its refusals) open at least until ``until`` (a lockout)."""
    session.execute(update(AttemptCounter).where(AttemptCounter.scope == scope,
                                                 AttemptCounter.window_ends_at < until)
                    .values(window_ends_at=until).execution_options(synchronize_session=False))


def reset(session: Session, scope: str) -> None:
    """Forget a scope's attempts (a successful sign-in)."""
    session.execute(delete(AttemptCounter).where(AttemptCounter.scope == scope)
                    .execution_options(synchronize_session=False))


def forget_expired(session: Session, now: datetime) -> int:
    """Delete windows that have ended (housekeeping); returns how many."""
    return session.execute(delete(AttemptCounter).where(AttemptCounter.window_ends_at <= now)
                           .execution_options(synchronize_session=False)).rowcount or 0
