"""The scheduler's release loop: a row is released at its moment (never before), a row planned sooner
wakes a sleeping loop through NOTIFY, idle costs one indexed query per wake, and two loops release each
row once.  Timing goals are the bench's (``bench.scheduler_lateness``); here only what could fail:
released or not, early or not, woken by what, how many queries."""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from tests.processes import wait_until
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import Notification, utcnow
from vestnik.workers import scheduling
from vestnik.workers.release import ReleaseLoop


def plan(factory, *after_s: float) -> list[int]:
    """Pending Telegram rows due ``after_s`` seconds from now, as handling plans a reminder."""
    now = utcnow()
    rows = [Notification(recipient_id=None, channel="telegram", recipient_address="1001", event_type="lesson_cancelled",
                         template_code="LESSON_CANCELLED", payload_json={}, send_at=now + timedelta(seconds=s))
            for s in after_s]
    with factory() as session:
        session.add_all(rows)
        session.commit()
        return [r.id for r in rows]


@contextmanager
def running_loop(url: str, *, tick_s: float):
    """A ReleaseLoop on its own engine and thread; yields (loop, handed ids, engine)."""
    engine = make_engine(url)
    handed: list[int] = []
    lock = threading.Lock()

    def hand_over(rows) -> None:
        with lock:
            handed.extend(r.id for r in rows)

    loop = ReleaseLoop(Settings(database_url=url, scheduler_tick_s=tick_s), make_session_factory(engine), hand_over,
                       engine=engine)
    halt = threading.Event()
    thread = threading.Thread(target=loop.run, args=(halt,), daemon=True)
    thread.start()
    try:
        yield loop, handed, engine
    finally:
        halt.set()
        thread.join(10)
        engine.dispose()
        assert not thread.is_alive(), "the release loop did not stop"


def queued_at(factory, ids: list[int]) -> dict[int, tuple]:
    with factory() as s:
        return {i: (q, a) for i, q, a in s.execute(select(Notification.id, Notification.queued_at,
                                                          Notification.send_at).where(Notification.id.in_(ids)))}


def test_a_row_is_released_at_its_moment_never_before_and_not_at_the_tick(db_url, session_factory):
    ids = plan(session_factory, 1.5, 3.0, 3600)
    with running_loop(db_url, tick_s=300) as (loop, handed, _):
        # The tick is 5 minutes: only sleeping until the next due send_at releases these in time.
        wait_until(lambda: len(handed) >= 2, 60, message="the two rows due within seconds")
    assert sorted(handed) == ids[:2]  # the one due in an hour waits
    for queued, send_at in queued_at(session_factory, ids[:2]).values():
        assert queued >= send_at, "released before its moment"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_row_planned_sooner_wakes_the_sleeping_loop_through_notify(db_url, session_factory):
    plan(session_factory, 3600)  # the loop sleeps towards this one (capped by the tick)
    with running_loop(db_url, tick_s=300) as (loop, handed, _):
        wait_until(lambda: loop.wakes >= 1, 30, message="the loop's first wake")
        wakes_before = loop.wakes
        (soon,) = plan(session_factory, 1.0)  # the trigger NOTIFYs at commit
        wait_until(lambda: handed, 60, message="the row planned after the loop went to sleep")
        assert loop.notify_wakeups >= 1 and loop.wakes > wakes_before
    assert handed == [soon]
    (queued, send_at), = queued_at(session_factory, [soon]).values()
    assert queued >= send_at


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_idle_costs_one_indexed_query_per_wake(db_url, session_factory):
    plan(session_factory, 3600)
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    with running_loop(db_url, tick_s=0.1) as (loop, handed, engine):
        wait_until(lambda: loop.wakes >= 1, 30, message="the loop's first wake")
        event.listen(engine, "before_cursor_execute", record)
        start = loop.wakes
        wait_until(lambda: loop.wakes >= start + 5, 60, message="five idle wakes")
        event.remove(engine, "before_cursor_execute", record)
        wakes = loop.wakes - start
    queries = [s for s in statements if "notifications" in s]
    assert not handed
    assert all(s.lstrip().upper().startswith("SELECT") for s in queries), queries  # no UPDATE while idle
    assert wakes - 1 <= len(queries) <= wakes + 1  # one per wake (the window may cut one at either end)

    # That one query can use the partial index on the pending rows' send_at.
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET enable_seqscan = off")
            compiled = scheduling.next_due_query(utcnow(), 120).compile(dialect=conn.dialect)
            explained = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params))
    finally:
        engine.dispose()
    assert "ix_notifications_due" in explained, explained


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_loops_release_each_row_once(db_url, session_factory):
    ids = plan(session_factory, *[0.5 + i * 0.05 for i in range(40)])
    with running_loop(db_url, tick_s=0.2) as (_, first, _e1), running_loop(db_url, tick_s=0.2) as (_, second, _e2):
        wait_until(lambda: len(first) + len(second) >= len(ids), 60, message="every row released")
    counts = Counter(first + second)
    assert sorted(counts) == sorted(ids) and set(counts.values()) == {1}
