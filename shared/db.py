"""Engines and sessions: the only place that knows how to connect.

The same models and migrations serve PostgreSQL (production) and SQLite (the
embedded demo).  SQLite gets WAL and a busy timeout so the demo's threads
(relay, workers, scheduler, web) can share one file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

_PG_DRIVER = re.compile(r"^postgres(ql)?://")


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy would pick psycopg2)."""
    return _PG_DRIVER.sub("postgresql+psycopg://", url)


def is_postgres(engine_or_url: Engine | str) -> bool:
    url = engine_or_url if isinstance(engine_or_url, str) else str(engine_or_url.url)
    return url.startswith("postgres")


def make_engine(url: str, *, pool_size: int = 5, echo: bool = False, synchronous_commit: bool = True) -> Engine:
    """``synchronous_commit=False`` (PostgreSQL): a commit returns before its WAL reaches the disk; only
    for writes whose loss in a database crash is harmless (the relay's "published" marks: a lost one
    publishes the event again, a duplicate the worker absorbs)."""
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
    return create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,  # survive a PostgreSQL restart: stale connections are replaced
        pool_recycle=1800,
        connect_args={} if synchronous_commit else {"options": "-c synchronous_commit=off"},
    )


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
