"""Joining the caller's transaction through whatever connection the CRM has.

Supported, on PostgreSQL: a SQLAlchemy ``Session`` (or ``scoped_session``)
or ``Connection``; a psycopg 3 connection; a psycopg2 connection; Django's
``django.db.connection`` (or ``connections[alias]``).  None of those packages
is imported here: the object is recognised by its class, so the CRM needs
nothing beyond the driver it already has.

A connection that would commit the statement on its own (autocommit mode
outside an explicit transaction) is refused: the event would no longer share
the fate of the CRM's change.  So is anything that is not a connection (an
Engine, a pool, a session factory, a cursor), with what to pass instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

from vestnik_client.errors import NotInTransaction, UnsupportedConnection

SUPPORTED = ("a SQLAlchemy Session or Connection, a psycopg 3 or psycopg2 connection, "
             "or Django's django.db.connection")

#: run(sql with %s placeholders, params) -> the first row (or None)
Runner = Callable[[str, Sequence[Any]], Optional[Sequence[Any]]]


def _classes(obj: Any) -> list:
    return [f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__]


def runner(conn: Any) -> Runner:
    """A function that runs one statement in ``conn``'s current transaction, or an error naming the mistake."""
    names = _classes(conn)
    top = names[0]
    if top.startswith("sqlalchemy."):
        return _sqlalchemy(conn, names)
    if top.startswith("django."):
        return _django(conn)
    if top.startswith("psycopg2."):
        return _dbapi(conn, conn.get_transaction_status() != 0, "psycopg2")
    if top.startswith("psycopg."):
        if any(n.startswith("psycopg.") and "Async" in n for n in names):
            raise UnsupportedConnection("an async psycopg connection: emit is synchronous; pass a psycopg "
                                        "Connection (or run emit's SQL yourself: docs/integration.md)")
        if any(n.endswith("Cursor") for n in names):
            raise UnsupportedConnection("a psycopg cursor: pass its connection (cursor.connection)")
        return _dbapi(conn, int(conn.info.transaction_status) != 0, "psycopg")
    if top.startswith("psycopg_pool."):
        raise UnsupportedConnection("a connection pool: take a connection and open a transaction, "
                                    "e.g. `with pool.connection() as conn, conn.transaction(): emit(conn, ...)`")
    raise UnsupportedConnection(f"cannot join a transaction through a {top}: pass {SUPPORTED}")


def _check_open_transaction(autocommit: bool, in_transaction: bool, what: str) -> None:
    if autocommit and not in_transaction:
        raise NotInTransaction(
            f"the {what} connection is in autocommit mode outside a transaction: the event would be committed "
            "on its own, whatever happens to the CRM's change. Open a transaction first (psycopg: `with "
            "conn.transaction():`; Django: `with transaction.atomic():`; SQLAlchemy: `with engine.begin() as "
            "conn:`)")


def _dbapi(conn: Any, in_transaction: bool, what: str) -> Runner:
    if getattr(conn, "closed", False):
        raise UnsupportedConnection(f"the {what} connection is closed")
    _check_open_transaction(bool(conn.autocommit), in_transaction, what)

    def run(sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        cur = conn.cursor()
        try:
            cur.execute(sql, params)
            return cur.fetchone()
        finally:
            cur.close()

    return run


def _sqlalchemy(obj: Any, names: list) -> Runner:
    if any(n.endswith((".Engine", ".AsyncEngine")) for n in names):
        raise UnsupportedConnection(
            "an Engine is not a connection: emit joins the transaction of the CRM's change, so pass the Session "
            "or Connection that makes it, e.g. `with engine.begin() as conn: ...; emit(conn, ...)`")
    if any(n.endswith(("sessionmaker", "async_sessionmaker")) for n in names):
        raise UnsupportedConnection("a session factory: pass a Session made by it (`with Session() as session:`)")
    if any(".Async" in n for n in names):
        raise UnsupportedConnection("an async SQLAlchemy session or connection: emit is synchronous; use "
                                    "`await session.run_sync(lambda s: emit(s, ...))`")
    if hasattr(obj, "get_bind") and hasattr(obj, "connection"):  # Session, scoped_session
        conn = obj.connection()
    elif hasattr(obj, "exec_driver_sql"):
        conn = obj
    else:
        raise UnsupportedConnection(f"cannot join a transaction through a {names[0]}: pass {SUPPORTED}")
    if conn.dialect.name != "postgresql":
        raise UnsupportedConnection(f"vestnik_client needs PostgreSQL; this connection is {conn.dialect.name} "
                                    "(on SQLite, the embedded demo, use vestnik.outbox.emit)")
    raw = conn.connection.dbapi_connection
    if raw is not None and bool(getattr(raw, "autocommit", False)):
        # SQLAlchemy's AUTOCOMMIT isolation level: each statement commits by itself.
        raise NotInTransaction(
            "the SQLAlchemy connection uses isolation_level='AUTOCOMMIT': the event would be committed on its "
            "own, whatever happens to the CRM's change. Use a connection with a transaction "
            "(`with engine.begin() as conn:`)")

    def run(sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        return conn.exec_driver_sql(sql, tuple(params)).first()

    return run


def _django(conn: Any) -> Runner:
    if not hasattr(conn, "in_atomic_block") or not hasattr(conn, "get_autocommit"):
        raise UnsupportedConnection("pass django.db.connection (or django.db.connections[alias]), not the "
                                    "connections handler")
    if conn.vendor != "postgresql":
        raise UnsupportedConnection(f"vestnik_client needs PostgreSQL; this Django database is {conn.vendor}")
    if not conn.in_atomic_block and conn.get_autocommit():
        raise NotInTransaction(
            "Django's connection is in autocommit mode outside transaction.atomic(): the event would be "
            "committed on its own, whatever happens to the CRM's change. Emit inside `with "
            "transaction.atomic():` (or ATOMIC_REQUESTS)")

    def run(sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()

    return run
