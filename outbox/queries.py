"""The only SQL on the outbox table: named query functions, SQLAlchemy Core.

Every function takes the caller's :class:`~sqlalchemy.Connection` and runs
inside the caller's transaction; none commits.  The relay calls
:func:`begin_claim`, :func:`claim_unpublished`, then :func:`mark_published` /
:func:`note_publish_failure` in one transaction, so the row locks taken by the
claim are held until the rows are marked (or released as still pending).

Backends:

- PostgreSQL: the claim is ``FOR UPDATE SKIP LOCKED``, so several relays share
  the backlog without waiting on each other and without publishing a row
  another relay holds.  It reads the partial index ``ix_outbox_unpublished``
  (only pending rows; measured 11x faster than a full index).
- SQLite (the embedded demo): no row locks exist; :func:`begin_claim` takes the
  database write lock up front (``BEGIN IMMEDIATE``), so even a second relay
  process on the same file cannot claim the same rows between our SELECT and
  our UPDATE.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import BigInteger, Connection, any_, bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY

from vestnik.shared.models import OutboxEvent, OutboxStatus, utcnow

_T = OutboxEvent.__table__
_PENDING = OutboxStatus.pending.value
_PUBLISHED = OutboxStatus.published.value


def _is_sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"


@functools.cache
def _statements(dialect: str) -> SimpleNamespace:
    """The relay's statements, built once per dialect with bound parameters: a statement built on every
    call (its expressions, its cache key) was half of the relay's CPU at a trickle of one event a round
    (issue 12, py-spy ``--gil``).  ``ids`` is one array on PostgreSQL (``id = ANY``), where an expanding
    ``IN`` rewrites the statement's text at every execution; SQLite expands it."""
    ids = (_T.c.id.in_(bindparam("ids", expanding=True)) if dialect == "sqlite"
           else _T.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))
    claim = select(_T.c.id, _T.c.key).where(_T.c.status == _PENDING).order_by(_T.c.id).limit(bindparam("limit"))
    return SimpleNamespace(
        claim=claim if dialect == "sqlite" else claim.with_for_update(skip_locked=True),
        mark_published=update(_T).where(ids, _T.c.status == _PENDING).values(
            status=_PUBLISHED, published_at=bindparam("now", type_=_T.c.published_at.type)),
        still_published=select(_T.c.id).where(ids, _T.c.status == _PUBLISHED),
        note_failure=update(_T).where(ids, _T.c.status == _PENDING).values(
            publish_attempts=_T.c.publish_attempts + 1),
    )


def begin_claim(conn: Connection) -> None:
    """Open the claim transaction on ``conn`` (which must not be in one yet).

    On SQLite this is ``BEGIN IMMEDIATE``: the write lock is taken before the
    SELECT, because SQLite has no ``FOR UPDATE`` and pysqlite would otherwise
    only begin at the first UPDATE.  On PostgreSQL it is a plain BEGIN; the
    claim's row locks do the work.  End it with ``conn.commit()``.
    """
    if _is_sqlite(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.begin()


def claim_unpublished(conn: Connection, limit: int) -> list[tuple[int, str | None]]:
    """Lock and return up to ``limit`` pending events as ``(id, key)``, oldest id first.

    Id order is not commit order (ids are taken before commit), but it keeps a
    batch stable and lets the per-key ordering in the worker see the older
    event first in the common case.
    """
    return [(int(row.id), row.key) for row in conn.execute(_statements(conn.dialect.name).claim, {"limit": limit})]


def mark_published(conn: Connection, ids: Sequence[int]) -> int:
    """Mark confirmed events published; return how many rows changed.

    Only rows still ``pending`` change: a worker may already have processed or
    failed an event whose earlier publication (before a relay crash) reached
    it, and that later status must stand.
    """
    if not ids:
        return 0
    return conn.execute(_statements(conn.dialect.name).mark_published, {"ids": list(ids), "now": utcnow()}).rowcount


def still_published(conn: Connection, ids: Sequence[int]) -> list[int]:
    """Those of ``ids`` still ``published``: handed to the broker, not yet handled by a worker."""
    if not ids:
        return []
    return [int(row[0]) for row in conn.execute(_statements(conn.dialect.name).still_published, {"ids": list(ids)})]


def note_publish_failure(conn: Connection, ids: Sequence[int]) -> int:
    """Count one more publish attempt that did not get these events out.

    The rows stay pending (the relay retries them forever: a committed event
    is never dropped); ``publish_attempts`` lets an admin see how long an
    event has been stuck behind an unreachable broker.
    """
    if not ids:
        return 0
    return conn.execute(_statements(conn.dialect.name).note_failure, {"ids": list(ids)}).rowcount


def backlog(conn: Connection) -> tuple[int, datetime | None]:
    """``(count, oldest created_at)`` of events not yet published, for metrics.

    The age of the oldest pending event is the relay's lag as the CRM sees it.
    """
    row = conn.execute(
        select(func.count(), func.min(_T.c.created_at)).where(_T.c.status == _PENDING)
    ).one()
    return int(row[0]), row[1]


def delete_processed_before(conn: Connection, cutoff: datetime, *, limit: int | None = None) -> int:
    """Delete events processed before ``cutoff``; return how many were deleted.

    Only ``processed`` rows go: pending ones are not delivered yet and failed
    ones are evidence an admin has to see.  ``limit`` bounds one call so that
    housekeeping on a large table holds its locks briefly (call it until it
    returns less than ``limit``).
    """
    where = (_T.c.status == OutboxStatus.processed.value, _T.c.processed_at < cutoff)
    if limit is None:
        return conn.execute(delete(_T).where(*where)).rowcount
    chunk = select(_T.c.id).where(*where).order_by(_T.c.id).limit(limit).scalar_subquery()
    return conn.execute(delete(_T).where(_T.c.id.in_(chunk))).rowcount
