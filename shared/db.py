"""Engines and sessions: the only place that knows how to connect.

The same models and migrations serve PostgreSQL (production) and SQLite (the
embedded demo).  SQLite gets WAL and a busy timeout so the demo's threads
(relay, workers, scheduler, web) can share one file.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

_PG_DRIVER = re.compile(r"^postgres(ql)?://")


def json_rows(rows: Iterable[dict[str, Any]]) -> str:
    """Rows as one JSON parameter (``jsonb_to_recordset``): psycopg dumps a Python list as a PostgreSQL
    array element by element, about 10-15 us of CPU per array parameter however short; a statement
    with a dozen arrays cost more to dump than to run."""
    return json.dumps(list(rows), ensure_ascii=False, separators=(",", ":"))


def rows_version_sql(table: str, key: str, *, ordered: bool = True) -> str:
    """A scalar SELECT (PostgreSQL) whose value changes with any insert, update or delete of ``table``'s
    rows (the admin's, a hand-written UPDATE): their count and an md5 of each row's ``key`` and ``xmin``.
    A process keeps what it read of a small table while this holds.  ``ordered=False`` aggregates in
    physical order (cheaper): only a write or a rewrite (VACUUM FULL) moves a row, and a rewrite's new
    order only makes the reader read the table once more."""
    order = f" ORDER BY {key}" if ordered else ""
    return (f"SELECT count(*) || ':' || md5(coalesce(string_agg({key}::text || ':' || xmin::text, ','{order}), ''))"
            f" AS version FROM {table}")


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy would pick psycopg2)."""
    return _PG_DRIVER.sub("postgresql+psycopg://", url)


def is_postgres(engine_or_url: Engine | str) -> bool:
    url = engine_or_url if isinstance(engine_or_url, str) else str(engine_or_url.url)
    return url.startswith("postgres")


#: a pooled connection idle at least this long is pinged (``SELECT 1``) before it is handed out
PING_AFTER_IDLE_S = 1.0
_IDLE_SINCE = "vestnik_idle_since"


def make_engine(url: str, *, pool_size: int = 5, echo: bool = False, synchronous_commit: bool = True,
                ping_after_idle_s: float = PING_AFTER_IDLE_S) -> Engine:
    """``synchronous_commit=False`` (PostgreSQL): a commit returns before its WAL reaches the disk; only
    for writes whose loss in a database crash is harmless (the relay's "published" marks: a lost one
    publishes the event again, a duplicate the worker absorbs).

    Stale connections (a PostgreSQL restart, a firewall's idle timeout) are caught by a ping on
    checkout, but only for a connection that sat in the pool ``ping_after_idle_s`` or longer: SQLAlchemy's
    ``pool_pre_ping`` pinged before every transaction, a round trip in each of the five short
    transactions of a one-recipient event (issue 12).  A connection that breaks while the pool is busy
    fails its transaction once, which every caller retries (handling by Dramatiq, delivery's records
    by ``_write``, a claim by a pump, the relay by its backoff), and the disconnect invalidates the
    whole pool, so the next checkouts connect afresh.  The pool is LIFO: a trickle reuses the few
    connections it needs, hot and unpinged, while the rest idle."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    engine = create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_use_lifo=True,
        pool_recycle=1800,
        connect_args={} if synchronous_commit else {"options": "-c synchronous_commit=off"},
    )
    _ping_after_idle(engine, ping_after_idle_s)
    return engine


def _ping_after_idle(engine: Engine, idle_s: float) -> None:
    """Survive a PostgreSQL restart: a connection idle ``idle_s`` or longer is pinged on checkout, and a
    dead one invalidates the pool (SQLAlchemy then connects afresh), as ``pool_pre_ping`` does."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < idle_s:
            return  # fresh, or in use a moment ago
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as e:
            if dialect.is_disconnect(e, dbapi_conn, None):
                raise exc.InvalidatePoolError() from e  # the pool retries with a new connection
            raise


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def safe_url(url: str) -> str:
    """The URL with its password masked, for logs and the admin."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - never let a log line fail
        return "<unparseable url>"
