"""The engine's pool: a connection that sat idle is pinged on checkout, and a dead one is replaced.

SQLAlchemy's ``pool_pre_ping`` pinged before every transaction (a round trip in each short
transaction of the delivery path, issue 12); ``make_engine`` pings only after an idle spell.  Here
the spell is 0 s, so every checkout of a used connection pings, and a backend killed meanwhile (what
clients see when PostgreSQL restarts) costs no failed transaction.
"""

from __future__ import annotations

from sqlalchemy import create_engine, text

from vestnik.shared.db import make_engine

ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _counting_pings(engine) -> list[int]:  # noqa: ANN001
    pings: list[int] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_conn):  # noqa: ANN001, ANN202
        pings.append(1)
        return ping(dbapi_conn)

    engine.dialect.do_ping = counted
    return pings


def test_a_connection_killed_while_idle_is_replaced_before_use(pg_url):
    engine = make_engine(pg_url, pool_size=1, ping_after_idle_s=0.0)
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            old = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": old}).scalar()
        with engine.connect() as conn:  # the ping finds it dead; the pool connects afresh
            new = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert new != old
    finally:
        engine.dispose()
        admin.dispose()


def test_only_a_connection_idle_for_the_spell_is_pinged(pg_url):
    busy = make_engine(pg_url, pool_size=1, ping_after_idle_s=3600.0)
    idle = make_engine(pg_url, pool_size=1, ping_after_idle_s=0.0)
    try:
        for engine, expected in ((busy, 0), (idle, 3)):
            pings = _counting_pings(engine)
            for _ in range(4):  # the first checkout connects: fresh, never pinged
                with engine.connect() as conn:
                    assert conn.execute(text("SELECT 1")).scalar_one() == 1
            assert len(pings) == expected
    finally:
        busy.dispose()
        idle.dispose()
