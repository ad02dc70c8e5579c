"""The one owner of notification state: every status change is a named function here.

Nothing else writes ``notifications.status`` (``tests/unit/test_state_owner.py``
greps for it).  The lifecycle:

    add_pending ──▶ pending ──claim──▶ processing ──record──▶ sent / failed
        │              ▲  │                │  │
        │   release ───┘  │ defer          │  └─ record (retry) ─▶ pending (send_at later)
        │  (no attempt)   ▼                └── reap_stuck ─▶ pending, or failed "delivery uncertain"
        │         cancel_* / expire ─▶ canceled
    add_claimed ─▶ processing   (a sign-in message, an admin's test: sent at once, same recording)

Every function takes the caller's :class:`~sqlalchemy.orm.Session` (the hot
ones of a delivery batch also a Core :class:`~sqlalchemy.engine.Connection`,
:data:`Db`) and runs in the caller's transaction (it never commits), the way
``outbox/queries.py`` does for the outbox.  Statements are set-based: one statement for a whole
batch, no ORM object per row, and every transition is guarded by the status
it leaves, so a duplicate, a late result or a second scheduler changes nothing
that another owner already moved on.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    column,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from vestnik.shared.db import json_rows, rows_version_sql
from vestnik.shared.models import (
    ClientAddress,
    DeliveryAttempt,
    Notification,
    NotificationStatus,
    UTCDateTime,
    aware,
    aware_iso,
    utcnow,
)

_N = Notification.__table__
_A = DeliveryAttempt.__table__

PENDING = NotificationStatus.pending.value
PROCESSING = NotificationStatus.processing.value
SENT = NotificationStatus.sent.value
FAILED = NotificationStatus.failed.value
CANCELED = NotificationStatus.canceled.value

#: rows made outside the event pipeline, whose text cannot be rebuilt
NOT_RESENDABLE_EVENTS = frozenset({"client_sign_in"})


#: where a delivery batch's statements run: a Session, or the Core connection of its transaction (a Session's
#: own transaction costs about 0.13 ms of CPU, a tenth of a one-recipient batch; workers/delivery.py)
Db = Session | Connection


def _postgres(session: Db) -> bool:
    bind = session if isinstance(session, Connection) else session.get_bind()
    return bind.dialect.name == "postgresql"


def _one_of_picked(session: Session, pick: Select) -> Any:
    """The condition "this row is one ``pick`` chose", for an UPDATE of the rows it chose.

    On PostgreSQL ``pick`` locks its rows (``FOR UPDATE SKIP LOCKED``) in a ``MATERIALIZED`` CTE that
    runs once.  Written as ``id IN (pick)``, the planner may join it by a nested loop that runs the
    pick (sort, lock) again for every outer row: it does when the table's statistics are stale, as
    they are during a burst of new rows, where a claim of 100 rows cost 250,000-780,000 buffer
    visits and 1-1.7 s (issue 12; ``tests/integration/test_lock_plans.py`` checks every locking plan)."""
    if not _postgres(session):  # SQLite: no row locks (one writer), and the IN runs once
        return _N.c.id.in_(pick.scalar_subquery())
    picked = pick.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
    return _N.c.id == picked.c.id


# ------------------------------------------------------------------ birth


def insert_ignoring_duplicates(session: Session) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING: a row that exists already (the same event, client,
    channel and step; the same broadcast and address) is skipped, so a repeat creates nothing twice."""
    if _postgres(session):
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(_N).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(_N).on_conflict_do_nothing()


@dataclass(frozen=True)
class Added:
    id: int
    channel: str
    address: str
    send_at: datetime | None
    event_id: int | None = None


def _array_type(column: Any) -> str:
    """The PostgreSQL array a column's values travel in (strings and JSON as text: the INSERT casts)."""
    if isinstance(column.type, JSON):
        return "text[]"
    name = column.type.compile(dialect=postgresql.dialect())
    return "text[]" if name.startswith(("VARCHAR", "TEXT")) else f"{name}[]"


@functools.lru_cache(maxsize=32)
def _insert_unnest(columns: tuple[str, ...]) -> Any:
    """INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING: one short statement whatever the
    number of rows.  (A multi-row VALUES is a new SQL text for every size, which psycopg parses in
    Python each time: most of an event's handling.)"""
    cols = [_N.c[name] for name in columns]
    arrays = ", ".join(f"CAST(:{name} AS {_array_type(c)})" for name, c in zip(columns, cols, strict=True))
    picked = ", ".join(f"CAST(v.{name} AS jsonb)" if isinstance(c.type, JSON) else f"v.{name}"
                       for name, c in zip(columns, cols, strict=True))
    return text(
        f"INSERT INTO notifications ({', '.join(columns)}, status) "
        f"SELECT {picked}, '{PENDING}' FROM unnest({arrays}) AS v({', '.join(columns)}) "
        "ON CONFLICT DO NOTHING RETURNING id, channel, recipient_address, send_at, event_id")


def _column_values(name: str, rows: Sequence[dict[str, Any]]) -> list[Any]:
    values = [row[name] for row in rows]
    column = _N.c[name]
    if isinstance(column.type, JSON):
        dumped: dict[int, str | None] = {}  # an event's rows share one payload: dumped once
        out = []
        for v in values:
            if id(v) not in dumped:
                dumped[id(v)] = None if v is None else json.dumps(v)
            out.append(dumped[id(v)])
        return out
    if isinstance(column.type, UTCDateTime):
        for v in values:
            if v is not None:
                aware(v)
    return values


#: Up to this many rows, :func:`add_pending` sends them as one JSON document (``jsonb_to_recordset``):
#: psycopg dumps each of the ~20 arrays of the unnest form in Python (type sniffing, then the list), about
#: 0.45 ms of CPU for the two rows of a one-recipient event against about 0.25 as JSON, and PostgreSQL
#: spends no more on it.  From about 20 rows PostgreSQL spends more parsing the JSON than the arrays
#: (30 against 20 us a row at 200 rows), so a bigger batch keeps the arrays.
SMALL_INSERT_ROWS = 16


def add_pending(session: Session, rows: Sequence[dict[str, Any]]) -> list[Added]:
    """Insert planned rows as ``pending``, a batch per statement; returns the rows inserted."""
    if not rows:
        return []
    given = rows[0].keys()
    if _postgres(session) and "status" not in given and all(r.keys() == given for r in rows):
        # The columns' Python-side defaults (the ORM's INSERT would apply them), once for the batch.
        defaults = {name: default.arg if default.is_scalar else default.arg(None)
                    for name, default in _defaults_missing(frozenset(given))}
        columns = tuple(sorted(given | defaults.keys()))
        if len(rows) <= SMALL_INSERT_ROWS:
            return [Added(*r) for r in session.execute(_insert_json(columns), {"rows": _rows_json(
                rows, defaults, _datetime_columns(columns))}).all()]
        values = {name: _column_values(name, rows) if name in given else [defaults[name]] * len(rows)
                  for name in columns}
        return [Added(*r) for r in session.execute(_insert_unnest(columns), values).all()]
    values = [{**row, "status": PENDING} for row in rows]
    stmt = insert_ignoring_duplicates(session).returning(_N.c.id, _N.c.channel, _N.c.recipient_address, _N.c.send_at,
                                                             _N.c.event_id)
    return [Added(*r) for r in session.execute(stmt, values).all()]


@functools.lru_cache(maxsize=32)
def _defaults_missing(given: frozenset[str]) -> tuple[tuple[str, Any], ...]:
    """The Python-side column defaults an INSERT of these columns must apply (scalars and callables)."""
    return tuple((c.name, c.default) for c in _N.columns
                 if c.name not in given and c.name != "status" and c.default is not None and not c.primary_key
                 and (c.default.is_scalar or c.default.is_callable))


@functools.lru_cache(maxsize=32)
def _datetime_columns(columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in columns if isinstance(_N.c[name].type, UTCDateTime))


def _rows_json(rows: Sequence[dict[str, Any]], defaults: dict[str, Any], datetimes: tuple[str, ...]) -> str:
    """The rows as one JSON array, datetimes as ISO 8601 with their offset (exact to the microsecond)."""
    out = []
    for row in rows:
        r = {**defaults, **row}
        for name in datetimes:
            r[name] = aware_iso(r[name])
        out.append(r)
    return json_rows(out)


@functools.lru_cache(maxsize=32)
def _insert_json(columns: tuple[str, ...]) -> Any:
    """INSERT ... SELECT FROM jsonb_to_recordset(rows) ON CONFLICT DO NOTHING: a small batch's rows in
    one parameter.  Strings are read as text and JSON as jsonb, as the unnest form's arrays are."""
    cols = [_N.c[name] for name in columns]
    types = ", ".join(f"{name} {'jsonb' if isinstance(c.type, JSON) else _array_type(c)[:-2]}"
                      for name, c in zip(columns, cols, strict=True))
    return text(
        f"INSERT INTO notifications ({', '.join(columns)}, status) "
        f"SELECT {', '.join(f'v.{name}' for name in columns)}, '{PENDING}' "
        f"FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v({types}) "
        "ON CONFLICT DO NOTHING RETURNING id, channel, recipient_address, send_at, event_id")


def add_pending_from(session: Session, columns: Sequence[str], rows: Select) -> int:
    """Insert what a SELECT yields (columns named by ``columns``) as ``pending`` rows, set-based
    (a broadcast's expansion); returns how many were inserted."""
    with_status = rows.add_columns(literal(PENDING, type_=_N.c.status.type).label("status"))
    stmt = insert_ignoring_duplicates(session).from_select([*columns, "status"], with_status)
    return session.execute(stmt).rowcount or 0


def add_claimed(session: Session, row: dict[str, Any], *, now: datetime, lease_s: float) -> int:
    """A row born ``processing`` (a sign-in message, an admin's test): it is sent at once by the
    caller, through :mod:`vestnik.workers.delivery`, and recorded like any other.  Returns its id."""
    values = {**row, "status": PROCESSING, "attempts": 0, "send_at": now, "created_at": now, "updated_at": now,
              "locked_until": now + timedelta(seconds=lease_s)}
    return int(session.execute(insert(_N).values(**values).returning(_N.c.id)).scalar_one())


def why_not_resendable(original: Notification) -> str | None:
    if original.recipient_id is None:
        return "a test sent to an admin is not re-sent"
    if original.event_type in NOT_RESENDABLE_EVENTS:
        return "a sign-in message is single-use; the client asks for a new one"
    return None


def resend(session: Session, original: Notification, *, initiator: str, now: datetime | None = None) -> int:
    """A pending copy of ``original`` (the original keeps its history), rendered again from its
    template when delivery takes it.  ValueError if it cannot be re-sent; returns the copy's id."""
    reason = why_not_resendable(original)
    if reason is not None:
        raise ValueError(reason)
    now = now or utcnow()
    values = dict(
        recipient_id=original.recipient_id, channel=original.channel,
        recipient_address=original.recipient_address, event_type=original.event_type,
        template_code=original.template_code, payload_json=original.payload_json, category=original.category,
        locale=original.locale, key=original.key, event_id=None, broadcast_id=original.broadcast_id,
        step=f"resend-of-{original.id}-{int(now.timestamp())}", initiator=initiator, status=PENDING,
        attempts=0, delivery_uncertain=False, send_at=now, created_at=now, updated_at=now,
    )
    return int(session.execute(insert(_N).values(**values).returning(_N.c.id)).scalar_one())


# ------------------------------------------------------------------ claiming


@dataclass(frozen=True)
class Claimed:
    """A row taken for sending: what rendering and sending need."""

    id: int
    channel: str
    recipient_id: int | None
    address: str
    event_type: str
    template_code: str
    payload: dict[str, Any]
    category: str
    locale: str
    step: str
    attempts: int  # attempts made before this one
    broadcast_id: int | None = None
    #: the templates' version as the claim read it, in the same statement (PostgreSQL's claims; see
    #: :data:`TEMPLATES_VERSION`): delivery's template cache starts afresh when it moved
    templates_version: str | None = None


_CLAIMED_COLUMNS = (_N.c.id, _N.c.channel, _N.c.recipient_id, _N.c.recipient_address, _N.c.event_type,
                    _N.c.template_code, _N.c.payload_json, _N.c.category, _N.c.locale, _N.c.step, _N.c.attempts,
                    _N.c.broadcast_id)


def _claim(session: Session, where: Any, order: Any, limit: int | None, now: datetime, lease_s: float
           ) -> list[Claimed]:
    pick = select(_N.c.id).where(_N.c.status == PENDING, or_(_N.c.send_at.is_(None), _N.c.send_at <= now), where)
    if order is not None:
        pick = pick.order_by(*order)
    if limit is not None:
        pick = pick.limit(limit)
    stmt = (
        update(_N)
        .where(_one_of_picked(session, pick), _N.c.status == PENDING)
        .values(status=PROCESSING, locked_until=now + timedelta(seconds=lease_s), updated_at=now)
        .returning(*_CLAIMED_COLUMNS)
    )
    rows = [Claimed(*row) for row in session.execute(stmt)]
    rows.sort(key=lambda c: c.id)
    return rows


def claim(session: Db, ids: Iterable[int], *, now: datetime, lease_s: float) -> list[Claimed]:
    """Take these rows if they are still pending and due (a duplicate finds nothing)."""
    ids = list(ids)
    if not ids:
        return []
    if _postgres(session):  # handling's hand-over of every few rows: the statement written out (below)
        rows = [Claimed(*row) for row in session.execute(_CLAIM_IDS_PG, {
            "now": now, "locked_until": now + timedelta(seconds=lease_s), "ids": ids})]
        rows.sort(key=lambda c: c.id)
        return rows
    return _claim(session, _N.c.id.in_(ids), None, None, now, lease_s)


#: Every template row's identity and version: any insert, update or delete (the admin's, a migration's, a
#: hand-written UPDATE) gives another value.  Read by the claims on PostgreSQL in their own statement (one
#: statement and round trip less per batch than asking apart), so the rows and the version a batch renders
#: them with come from one snapshot, taken before any template is looked up.  In the table's physical order,
#: not sorted (53 us of PostgreSQL's CPU against 75 with 147 templates): only a write or a rewrite (VACUUM
#: FULL) moves a row, and a rewrite's new order only makes the workers find their templates once more.
TEMPLATES_VERSION = rows_version_sql("notification_templates", "id", ordered=False)

_CLAIMED_RETURNING = ", ".join([*(f"notifications.{c.name}" for c in _CLAIMED_COLUMNS), "templates.version"])

def _claim_pg(pick: str) -> Any:
    """A claim on PostgreSQL, written out: the same statement as :func:`_claim` builds, without building and
    looking up an expression on every batch (about 1.5 ms of CPU each time, whatever the rows).  ``pick``
    narrows the due pending rows (and orders and limits them); it runs in a MATERIALIZED CTE, never as
    ``IN (subquery)`` (:func:`_one_of_picked` says why).  The templates' version comes in the same snapshot."""
    return text(f"""
WITH picked AS MATERIALIZED (
    SELECT notifications.id FROM notifications
    WHERE notifications.status = '{PENDING}' AND (notifications.send_at IS NULL OR notifications.send_at <= :now)
      AND {pick}
    FOR UPDATE SKIP LOCKED),
templates AS MATERIALIZED ({TEMPLATES_VERSION})
UPDATE notifications SET status = '{PROCESSING}', locked_until = :locked_until, updated_at = :now
FROM picked, templates WHERE notifications.id = picked.id AND notifications.status = '{PENDING}'
RETURNING {_CLAIMED_RETURNING}
""").bindparams(bindparam("now", type_=_N.c.updated_at.type), bindparam("locked_until", type_=_N.c.locked_until.type)
                ).columns(*_CLAIMED_COLUMNS, column("version", String))


#: claim_due: one channel's due rows, oldest first
_CLAIM_DUE_PG = _claim_pg("notifications.channel = :channel AND notifications.send_at IS NOT NULL\n"
                          "    ORDER BY notifications.send_at, notifications.id LIMIT :limit")
#: claim: these rows (the ids as one array parameter)
_CLAIM_IDS_PG = _claim_pg("notifications.id = ANY(CAST(:ids AS bigint[]))")


def claim_due(session: Db, channel: str, *, limit: int, now: datetime, lease_s: float) -> list[Claimed]:
    """Take up to ``limit`` due pending rows of ``channel``, oldest ``send_at`` first; rows another
    worker holds are skipped (``FOR UPDATE SKIP LOCKED``), so pumps never wait on each other."""
    if _postgres(session):
        rows = [Claimed(*row) for row in session.execute(_CLAIM_DUE_PG, {
            "now": now, "locked_until": now + timedelta(seconds=lease_s), "channel": channel, "limit": limit})]
        rows.sort(key=lambda c: c.id)
        return rows
    return _claim(session, and_(_N.c.channel == channel, _N.c.send_at.is_not(None)), (_N.c.send_at, _N.c.id),
                  limit, now, lease_s)


def store_rendered(session: Db,
                   rendered: Sequence[tuple[int, str | None, str | None, str | None]]) -> None:
    """Keep the exact subject and text of each claimed row (what the client gets), and the locale of the
    template it came from (a fallback's when the client's locale had none): the history shows it."""
    if rendered:
        session.execute(
            update(_N).where(_N.c.id == bindparam("b_id")).values(subject=bindparam("b_subject"),
                                                                  body=bindparam("b_body"),
                                                                  locale=func.coalesce(bindparam("b_locale"),
                                                                                       _N.c.locale)),
            [{"b_id": i, "b_subject": s, "b_body": b, "b_locale": loc} for i, s, b, loc in rendered],
            execution_options={"synchronize_session": False},
        )


#: open_attempts on PostgreSQL: one statement for a chunk (count the attempt, keep the text, write the
#: attempt rows), the rows passed as one JSON parameter (:func:`~vestnik.shared.db.json_rows`).  Its result
#: columns are declared (as :data:`_RECORD_PG`'s): SQLAlchemy then keeps the result's description instead of
#: building it from the cursor's on every call (about 30 us of CPU).
_OPEN_PG = text("""
WITH v AS (
    SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
        AS v(id bigint, subject text, body text, locale text, keep boolean)
), n AS (
    UPDATE notifications SET attempts = notifications.attempts + 1, updated_at = :now,
        subject = CASE WHEN v.keep THEN v.subject ELSE notifications.subject END,
        body = CASE WHEN v.keep THEN v.body ELSE notifications.body END,
        locale = coalesce(v.locale, notifications.locale)
    FROM v WHERE notifications.id = v.id AND notifications.status = 'processing'
    RETURNING notifications.id, notifications.attempts
)
INSERT INTO delivery_attempts (notification_id, attempt_no, started_at)
SELECT id, attempts, :now FROM n
RETURNING notification_id, attempt_no
""").columns(column("notification_id", BigInteger), column("attempt_no", Integer))


def record_attachments(session: Session, carried: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """What each row carries (source, name, type, size), for the history; set when the file is had.

    One statement per distinct file (a broadcast's batch carries one): every UPDATE of notifications
    runs the day-count triggers once (migration 0020)."""
    by_file: dict[str, tuple[dict[str, Any], list[int]]] = {}
    for row_id, about in carried:
        by_file.setdefault(json.dumps(about, sort_keys=True), (about, []))[1].append(row_id)
    for about, ids in by_file.values():
        session.execute(update(Notification).where(Notification.id.in_(ids)).values(attachment=about)
                        .execution_options(synchronize_session=False))


def open_attempts(session: Db, ids: Sequence[int], *, now: datetime,
                  rendered: Mapping[int, tuple[str | None, str | None, str | None]] | None = None
                  ) -> list[tuple[int, int]]:
    """Count one more attempt on these processing rows and write their attempt rows, before the
    provider is called; returns ``(notification id, attempt number)`` pairs.  ``rendered``: the exact
    subject and text each row is about to send (what the client gets) and the locale of the template it
    came from (see :func:`store_rendered`), kept in the same statement."""
    if not ids:
        return []
    rendered = rendered or {}
    if _postgres(session):
        rows = []
        for i in ids:
            t = rendered.get(i)
            rows.append({"id": i, "subject": t[0], "body": t[1], "locale": t[2], "keep": True} if t is not None
                        else {"id": i, "keep": False})
        numbered = session.execute(_OPEN_PG, {"rows": json_rows(rows), "now": now}).all()
        return sorted((int(i), int(n)) for i, n in numbered)
    store_rendered(session, [(i, *rendered[i]) for i in ids if i in rendered])
    numbered = session.execute(
        update(_N).where(_N.c.id.in_(list(ids)), _N.c.status == PROCESSING)
        .values(attempts=_N.c.attempts + 1, updated_at=now)
        .returning(_N.c.id, _N.c.attempts)
    ).all()
    pairs = sorted((int(i), int(n)) for i, n in numbered)
    if pairs:
        session.execute(insert(_A), [{"notification_id": i, "attempt_no": n, "started_at": now} for i, n in pairs])
    return pairs


# ------------------------------------------------------------------ giving rows back


def release(session: Db, ids: Sequence[int], *, now: datetime, send_at: datetime | None = None,
            reason: str | None = None) -> int:
    """Processing rows whose provider was never called go back to pending, no attempt counted
    (the limiter had no slot, a batch ran long).  An attempt row opened for them is removed."""
    if not ids:
        return 0
    ids = list(ids)
    opened = [int(i) for i in session.scalars(
        select(_A.c.notification_id).join(_N, _N.c.id == _A.c.notification_id)
        .where(_N.c.id.in_(ids), _N.c.status == PROCESSING, _A.c.attempt_no == _N.c.attempts,
               _A.c.outcome.is_(None)))]
    if opened:
        session.execute(delete(_A).where(
            _A.c.notification_id.in_(opened), _A.c.outcome.is_(None),
            _A.c.attempt_no == select(_N.c.attempts).where(_N.c.id == _A.c.notification_id).scalar_subquery()))
        session.execute(update(_N).where(_N.c.id.in_(opened), _N.c.status == PROCESSING)
                        .values(attempts=_N.c.attempts - 1))
    return session.execute(
        update(_N).where(_N.c.id.in_(ids), _N.c.status == PROCESSING)
        .values(status=PENDING, send_at=send_at or now, locked_until=None, queued_at=None, updated_at=now,
                last_error=reason)
    ).rowcount


def release_each(session: Db, rows: Sequence[tuple[int, datetime]], *, now: datetime) -> None:
    """Claimed rows the limiter had no slot for go back to pending, each due at its own moment
    (no attempt was opened for them)."""
    if rows:
        session.execute(
            update(_N).where(_N.c.id == bindparam("b_id"), _N.c.status == PROCESSING)
            .values(status=PENDING, send_at=bindparam("b_send_at", type_=_N.c.send_at.type), locked_until=None,
                    queued_at=None, updated_at=now),
            [{"b_id": i, "b_send_at": at} for i, at in rows],
            execution_options={"synchronize_session": False},
        )


def defer_due(session: Session, channel: str, *, wait_s: float, now: datetime) -> int:
    """Park every due pending row of a channel until its quota frees up (the daily email quota)."""
    return session.execute(
        update(_N).where(_N.c.channel == channel, _N.c.status == PENDING, _N.c.send_at <= now)
        .values(send_at=now + timedelta(seconds=wait_s), queued_at=None, updated_at=now,
                last_error=f"waiting {int(wait_s)}s for the channel's quota")
    ).rowcount


def defer(session: Session, ids: Sequence[int], *, wait_s: float, now: datetime) -> int:
    """Park pending rows until a channel quota frees up (the daily email quota)."""
    if not ids:
        return 0
    return session.execute(
        update(_N).where(_N.c.id.in_(list(ids)), _N.c.status == PENDING)
        .values(send_at=now + timedelta(seconds=wait_s), queued_at=None, updated_at=now,
                last_error=f"waiting {int(wait_s)}s for the channel's quota")
    ).rowcount


def hold(session: Session, until: Mapping[int, datetime], *, now: datetime, reason: str) -> int:
    """Pending rows wait until their own moments (a client's quiet hours end): not in flight, the
    scheduler releases each when it comes.  ``reason`` is shown with the moment."""
    if not until:
        return 0
    return session.execute(
        update(_N).where(_N.c.id == bindparam("b_id"), _N.c.status == PENDING)
        .values(send_at=bindparam("b_until", type_=_N.c.send_at.type), queued_at=None, updated_at=now,
                last_error=bindparam("b_reason")),
        [{"b_id": nid, "b_until": at, "b_reason": f"{reason}: waits until {at:%Y-%m-%d %H:%M} UTC"}
         for nid, at in until.items()],
        execution_options={"synchronize_session": False},
    ).rowcount


# ------------------------------------------------------------------ outcomes


@dataclass(frozen=True)
class Settled:
    """What became of one attempt, decided by delivery (``workers/retry.py``); recorded by :func:`record`.

    ``status`` is ``sent``, ``failed`` or ``pending`` (a retry at ``send_at``).
    """

    id: int
    attempt_no: int
    outcome: str  # the attempt's outcome: channels.base.Outcome value
    status: str
    error: str | None = None  # on the attempt row (the provider's words)
    last_error: str | None = None  # on the notification (what an admin reads)
    external_id: str | None = None
    send_at: datetime | None = None
    uncertain: bool = False
    counts: bool = True  # False: a provider's 429; the attempt does not count
    queued: bool = False  # a retry handed to the broker's delay already (the scheduler leaves it)


#: record on PostgreSQL: one statement for a chunk (close the attempts, move the rows still ours),
#: the outcomes passed as one JSON parameter (:func:`~vestnik.shared.db.json_rows`).  The attempt is closed
#: whoever owns the row now (as below).
_RECORD_PG = text("""
WITH v AS (
    SELECT id, no, outcome, error, external, status, last_error, send_at, coalesce(uncertain, false) AS uncertain,
           coalesce(uncount, 0) AS uncount, coalesce(queued, false) AS queued
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
        AS v(id bigint, no integer, outcome text, error text, external text, status text, last_error text,
             send_at timestamptz, uncertain boolean, uncount integer, queued boolean)
), closed AS (
    UPDATE delivery_attempts a SET finished_at = :now, outcome = v.outcome, error = v.error,
        external_id = v.external
    FROM v WHERE a.notification_id = v.id AND a.attempt_no = v.no AND a.outcome IS NULL
)
UPDATE notifications n SET status = v.status, last_error = v.last_error, external_id = v.external,
    sent_at = CASE WHEN v.status = 'sent' THEN CAST(:now AS timestamptz) END,
    send_at = coalesce(v.send_at, n.send_at), delivery_uncertain = v.uncertain,
    attempts = n.attempts - v.uncount,
    queued_at = CASE WHEN v.status = 'pending' THEN
        CASE WHEN v.queued THEN CAST(:now AS timestamptz) END ELSE n.queued_at END,
    locked_until = NULL, updated_at = :now
FROM v WHERE n.id = v.id AND n.status = 'processing'
RETURNING n.id
""").columns(column("id", BigInteger))


def _settled_json(s: Settled) -> dict[str, Any]:
    """One outcome for :data:`_RECORD_PG`; what is null or false by default is left out (a sent row's
    entry is its id, attempt, outcome, status and the provider's id)."""
    row: dict[str, Any] = {"id": s.id, "no": s.attempt_no, "outcome": s.outcome, "status": s.status}
    if s.external_id is not None:
        row["external"] = s.external_id
    if s.error is not None:
        row["error"] = s.error
    if s.last_error is not None:
        row["last_error"] = s.last_error
    if s.send_at is not None:
        row["send_at"] = aware_iso(s.send_at)
    if s.uncertain:
        row["uncertain"] = True
    if not s.counts:
        row["uncount"] = 1
    if s.queued:
        row["queued"] = True
    return row


def record(session: Db, settled: Sequence[Settled], *, now: datetime) -> set[int]:
    """Close the attempts and move the rows, a chunk at a time; returns the ids that were still
    ours (``processing``).  A row the reaper took back meanwhile keeps the reaper's verdict."""
    if not settled:
        return set()
    if _postgres(session):
        return {int(r[0]) for r in session.execute(_RECORD_PG, {
            "rows": json_rows(_settled_json(s) for s in settled), "now": now}).all()}
    session.execute(
        # The open attempt: a 429 does not count, so the next attempt has the same number.
        update(_A).where(_A.c.notification_id == bindparam("b_id"), _A.c.attempt_no == bindparam("b_no"),
                         _A.c.outcome.is_(None))
        .values(finished_at=now, outcome=bindparam("b_outcome"), error=bindparam("b_error"),
                external_id=bindparam("b_external")),
        [{"b_id": s.id, "b_no": s.attempt_no, "b_outcome": s.outcome, "b_error": s.error,
          "b_external": s.external_id} for s in settled],
        execution_options={"synchronize_session": False},
    )
    ids = [s.id for s in settled]
    ours = set(session.scalars(select(_N.c.id).where(_N.c.id.in_(ids), _N.c.status == PROCESSING)))
    rows = [s for s in settled if s.id in ours]
    if rows:
        session.execute(
            update(_N).where(_N.c.id == bindparam("b_id"), _N.c.status == PROCESSING)
            .values(status=bindparam("b_status"), last_error=bindparam("b_last_error"),
                    external_id=bindparam("b_external"), sent_at=bindparam("b_sent_at"),
                    send_at=func.coalesce(bindparam("b_send_at", type_=_N.c.send_at.type), _N.c.send_at),
                    delivery_uncertain=bindparam("b_uncertain"), attempts=_N.c.attempts - bindparam("b_uncount"),
                    # a retry is with the broker (its delay) or not; a finished row keeps when it was handed over
                    queued_at=case((bindparam("b_status") == PENDING, bindparam("b_queued", type_=_N.c.queued_at.type)),
                                   else_=_N.c.queued_at),
                    locked_until=None,
                    updated_at=now),
            [{"b_id": s.id, "b_status": s.status, "b_last_error": s.last_error, "b_external": s.external_id,
              "b_sent_at": now if s.status == SENT else None, "b_send_at": s.send_at, "b_uncertain": s.uncertain,
              "b_uncount": 0 if s.counts else 1, "b_queued": now if s.queued else None} for s in rows],
            execution_options={"synchronize_session": False},
        )
    return ours


def finish(session: Db, ids: Sequence[int], status: NotificationStatus, reason: str | None, *,
           now: datetime) -> int:
    """End claimed rows without a provider call: failed (the template does not render) or
    canceled (the client said no since it was planned)."""
    if not ids:
        return 0
    return session.execute(
        update(_N).where(_N.c.id.in_(list(ids)), _N.c.status == PROCESSING)
        .values(status=status.value, last_error=reason, locked_until=None, updated_at=now)
    ).rowcount


def fail_poisoned(session: Session, notification_id: int, reason: str, *, now: datetime) -> int:
    """A row whose delivery message a worker died on again and again (workers/middleware/poison.py):
    failed with the reason, if it is still waiting or processing."""
    return session.execute(
        update(_N).where(_N.c.id == notification_id, _N.c.status.in_([PENDING, PROCESSING]))
        .values(status=FAILED, last_error=reason, locked_until=None, updated_at=now)
    ).rowcount


def mark_unreachable(session: Session, client_id: int | None, channel: str, address: str, reason: str) -> None:
    """The one place a permanent provider error disables a client's address on a channel, and
    only if it is still the address that failed (the client may have changed it since); a post's
    (no client) marks the registered chat (``workers/chats.py``)."""
    if client_id is None:  # a group or channel (an admin's own test address is no registered chat)
        from vestnik.workers.chats import mark_unreachable as chat_unreachable

        chat_unreachable(session, channel, address, reason)
        return
    now = utcnow()
    session.execute(
        update(ClientAddress).where(ClientAddress.client_id == client_id, ClientAddress.channel == channel,
                                    func.trim(ClientAddress.address) == address.strip())
        .values(unreachable_reason=reason[:500], unreachable_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )


# ------------------------------------------------------------------ canceling


def _cancel(session: Session, where: Any, reason: str, now: datetime) -> int:
    return session.execute(
        update(_N).where(_N.c.status == PENDING, where)
        .values(status=CANCELED, last_error=reason, locked_until=None, updated_at=now)
    ).rowcount


def cancel_by_key(session: Session, key: str, reason: str, now: datetime) -> int:
    """Cancel every pending notification with this key (a lesson canceled or moved)."""
    return _cancel(session, _N.c.key == key, reason, now)


def cancel_broadcast(session: Session, broadcast_id: int, reason: str, now: datetime) -> int:
    return _cancel(session, _N.c.broadcast_id == broadcast_id, reason, now)


def cancel_category(session: Session, client_id: int, category: str, reason: str, now: datetime) -> int:
    """A client unsubscribed from a category: its pending notifications go."""
    return _cancel(session, and_(_N.c.recipient_id == client_id, _N.c.category == category), reason, now)


def cancel_client(session: Session, client_id: int, reason: str, now: datetime) -> int:
    """A client was forgotten at the CRM's request: nothing more goes to it."""
    return _cancel(session, _N.c.recipient_id == client_id, reason, now)


def cancel_chat(session: Session, channel: str, address: str, reason: str, now: datetime) -> int:
    """A chat was removed from the registry: its posts still to be sent go (posts have no client)."""
    return _cancel(session, and_(_N.c.recipient_id.is_(None), _N.c.channel == channel,
                                 _N.c.recipient_address == address), reason, now)


def cancel_selected(session: Session, ids: Sequence[int], reason: str, now: datetime) -> int:
    """An admin's cancel of chosen rows (only pending ones change)."""
    return _cancel(session, _N.c.id.in_(list(ids)), reason, now)


def retry_failed(session: Session, ids: Sequence[int], now: datetime) -> int:
    """An admin's retry: failed rows become pending and due now (a fresh attempt count is not given:
    the history keeps every attempt)."""
    return session.execute(
        update(_N).where(_N.c.id.in_(list(ids)), _N.c.status == FAILED)
        .values(status=PENDING, send_at=now, queued_at=None, delivery_uncertain=False, updated_at=now)
    ).rowcount


# ------------------------------------------------------------------ the scheduler's transitions


def expire(session: Session, now: datetime) -> int:
    """Due rows past their ``expires_at`` (a reminder after the lesson started) are canceled."""
    return _cancel(session, and_(_N.c.send_at <= now, _N.c.expires_at < now),
                   "too late: its moment passed before it could be sent", now)


@dataclass(frozen=True)
class Released:
    id: int
    channel: str
    address: str


def _releasable(now: datetime, redrive_after_s: float) -> Any:
    """Pending rows not with the broker (or handed over so long ago that they are re-driven)."""
    stale = now - timedelta(seconds=redrive_after_s)
    return and_(_N.c.status == PENDING, or_(_N.c.queued_at.is_(None), _N.c.queued_at < stale))


def next_due_query(now: datetime, *, redrive_after_s: float) -> Select:
    """The earliest ``send_at`` that :func:`release_due` would take once it has come (one index scan)."""
    return (select(_N.c.send_at).where(_releasable(now, redrive_after_s), _N.c.send_at.is_not(None))
            .order_by(_N.c.send_at).limit(1))


def release_due(session: Session, now: datetime, *, redrive_after_s: float, limit: int = 1000) -> list[Released]:
    """Due pending rows not handed to delivery yet (or handed long ago and never taken) are
    marked handed now; the caller enqueues them.  ``SKIP LOCKED``: two schedulers split the rows."""
    pick = select(_N.c.id).where(_releasable(now, redrive_after_s), _N.c.send_at <= now).order_by(_N.c.send_at)
    pick = pick.limit(limit)
    rows = session.execute(
        update(_N).where(_one_of_picked(session, pick)).values(queued_at=now)
        .returning(_N.c.id, _N.c.channel, _N.c.recipient_address)
    ).all()
    return [Released(*r) for r in rows]


def mark_queued(session: Session, ids: Sequence[int], now: datetime) -> None:
    """These pending rows were handed to the broker (the scheduler re-drives them if never taken)."""
    if ids:
        session.execute(update(_N).where(_N.c.id.in_(list(ids)), _N.c.status == PENDING).values(queued_at=now))


def reap_stuck(session: Session, now: datetime) -> tuple[int, int]:
    """Rows left ``processing`` past their lease.  With an open attempt the provider may have the
    message: failed as "delivery uncertain", never resent (invariant 4).  Without one, the provider
    was never called: back to pending.  Returns (requeued, marked uncertain)."""
    open_attempt = exists().where(
        _A.c.notification_id == _N.c.id, _A.c.attempt_no == _N.c.attempts, _A.c.outcome.is_(None))
    expired = and_(_N.c.status == PROCESSING, _N.c.locked_until < now)
    uncertain = session.execute(
        update(_N).where(expired, open_attempt)
        .values(status=FAILED, delivery_uncertain=True, locked_until=None, updated_at=now,
                last_error="delivery uncertain (not resent): the worker stopped during the provider call")
    ).rowcount
    requeued = session.execute(
        update(_N).where(expired, ~open_attempt)
        .values(status=PENDING, queued_at=None, locked_until=None, updated_at=now,
                last_error="worker stopped before sending; requeued")
    ).rowcount
    return requeued, uncertain


def hand_over(session: Session, broadcast_id: int, channel: str, room: int, now: datetime) -> list[Released]:
    """A broadcast's held rows (pending, ``send_at`` NULL) become due, up to ``room`` of them."""
    pick = (select(_N.c.id)
            .where(_N.c.broadcast_id == broadcast_id, _N.c.channel == channel, _N.c.status == PENDING,
                   _N.c.send_at.is_(None))
            .order_by(_N.c.id).limit(room))
    return [Released(*r) for r in session.execute(
        update(_N).where(_one_of_picked(session, pick))
        .values(send_at=now, queued_at=now, updated_at=now)
        .returning(_N.c.id, _N.c.channel, _N.c.recipient_address)
    ).all()]


# ------------------------------------------------------------------ reads for the limiter


def seed_source(factory: Any) -> Any:
    """``(channel, since) -> [(wall-clock ms begun, send id, wall-clock ms ended or None)]``: every
    provider call of a channel that began since a moment or has not ended, from the attempt rows (the
    limiter rebuilds its long windows from it after Redis lost them; an attempt row is written before
    each call, so none is missed).  The send id, ``<notification id>:<attempt number>``, is the one the
    delivery gives the limiter's gate, so a send counted twice is counted once."""

    def sends(channel: str, since_s: float) -> list[tuple[int, str, int | None]]:
        from datetime import UTC

        from vestnik.workers.limits import IN_FLIGHT_S

        # A call lasts at most IN_FLIGHT_S (its timeouts), so one that ended since began at most that long before.
        since = datetime.fromtimestamp(since_s - IN_FLIGHT_S, UTC)
        with factory() as session:
            rows = session.execute(
                select(_A.c.notification_id, _A.c.attempt_no, _A.c.started_at, _A.c.finished_at)
                .join(_N, _N.c.id == _A.c.notification_id)
                .where(_N.c.channel == channel, _A.c.started_at >= since)
            ).all()
        return [(int(started.timestamp() * 1000), f"{nid}:{no}",
                 int(finished.timestamp() * 1000) if finished is not None else None)
                for nid, no, started, finished in rows]

    return sends
