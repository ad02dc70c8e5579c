"""notification_day_counts (migration 0020) stays exact: after concurrent inserts, status changes,
deletes and rollbacks, with folds running meanwhile, its sums equal a COUNT(*) over the rows; the
migration backfills the rows that existed before it."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

from alembic import command
from sqlalchemy import text

from vestnik.shared import day_counts
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.migrate import alembic_config, upgrade
from vestnik.shared.models import utcnow

_TRUTH = text("""
SELECT (created_at AT TIME ZONE 'UTC')::date AS day, channel, status, delivery_uncertain, count(*),
       count(*) FILTER (WHERE status = 'sent' AND sent_at IS NOT NULL),
       coalesce(sum(EXTRACT(epoch FROM sent_at - coalesce(send_at, created_at))::float8)
                FILTER (WHERE status = 'sent'), 0)
FROM notifications GROUP BY 1, 2, 3, 4
""")


def _truth(conn) -> dict:
    return {(str(d), ch, st, bool(u)): (n, w, s) for d, ch, st, u, n, w, s in conn.execute(_TRUTH)}


def _same(summary: dict, truth: dict) -> bool:
    """Counts equal; the sums of waits equal up to float rounding (differences added and taken away)."""
    return summary.keys() == truth.keys() and all(
        summary[k][:2] == truth[k][:2] and abs(summary[k][2] - truth[k][2]) < 1e-6 for k in truth)


def _summary(factory) -> dict:
    with factory() as s:
        return {(c.day, c.channel, c.status, c.uncertain): (c.n, c.waited, c.wait_sum)
                for c in day_counts.per_day(s, (utcnow() - timedelta(days=30)).date()) if c.n}


_INSERT = text("""
INSERT INTO notifications (recipient_id, channel, recipient_address, event_type, template_code, payload_json,
    status, attempts, created_at, updated_at, sent_at, send_at, initiator, category, locale, step,
    delivery_uncertain)
SELECT 1, CASE WHEN random() < 0.6 THEN 'telegram' ELSE 'email' END, 'x', 'e', 'E', '{}', 'pending', 0,
       now() - floor(random() * 3) * interval '1 day', now(), NULL, now() - interval '5 seconds', 'system',
       'service', 'ru', 'k' || :tag || '-' || g, false
FROM generate_series(1, :n) g
""")
_MOVES = [  # set-based, as the workers write: one statement for many rows
    "UPDATE notifications SET status = 'processing' WHERE id IN "
    "(SELECT id FROM notifications WHERE status = 'pending' ORDER BY random() LIMIT 7 FOR UPDATE SKIP LOCKED)",
    "UPDATE notifications SET status = 'sent', sent_at = now() WHERE id IN "
    "(SELECT id FROM notifications WHERE status = 'processing' ORDER BY random() LIMIT 5 FOR UPDATE SKIP LOCKED)",
    "UPDATE notifications SET status = 'failed', delivery_uncertain = random() < 0.5 WHERE id IN "
    "(SELECT id FROM notifications WHERE status = 'processing' ORDER BY random() LIMIT 2 FOR UPDATE SKIP LOCKED)",
    "UPDATE notifications SET status = 'pending', delivery_uncertain = false WHERE id IN "
    "(SELECT id FROM notifications WHERE status = 'failed' ORDER BY random() LIMIT 2 FOR UPDATE SKIP LOCKED)",
    "UPDATE notifications SET queued_at = now() WHERE id IN "  # changes no key: adds no difference
    "(SELECT id FROM notifications WHERE status = 'pending' ORDER BY random() LIMIT 5 FOR UPDATE SKIP LOCKED)",
    "DELETE FROM notifications WHERE id IN "
    "(SELECT id FROM notifications ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED)",
]


def test_sums_equal_a_count_after_concurrent_writes_and_folds(pg_url):
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO clients (id, name, locale, timezone, allow_service_notifications,"
                          " allow_marketing_notifications, created_at, updated_at)"
                          " VALUES (1, 'A', 'ru', 'UTC', true, true, now(), now())"))
    errors: list[BaseException] = []
    writing = threading.Event()

    def writer(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            for i in range(40):
                with engine.connect() as conn:
                    tx = conn.begin()
                    conn.execute(_INSERT, {"n": rnd.randint(1, 20), "tag": f"{seed}-{i}"})
                    for sql in rnd.sample(_MOVES, 3):
                        conn.execute(text(sql))
                    tx.rollback() if rnd.random() < 0.2 else tx.commit()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    def folder() -> None:
        try:
            while writing.is_set():
                with factory() as s, s.begin():
                    day_counts.fold(s)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    writing.set()
    fold_thread = threading.Thread(target=folder)
    fold_thread.start()
    writers = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    writing.clear()
    fold_thread.join()
    assert errors == []
    with engine.connect() as conn:
        truth = _truth(conn)
    assert sum(n for n, _w, _s in truth.values()) > 100 and any(k[2] == "sent" for k in truth)
    assert _same(_summary(factory), truth), (_summary(factory), truth)
    with factory() as s, s.begin():
        day_counts.fold(s)
    assert _same(_summary(factory), truth), (_summary(factory), truth)
    with engine.connect() as conn:  # folded: one row per key
        assert conn.scalar(text("SELECT count(*) FROM notification_day_counts")) == len(truth)
    engine.dispose()


def test_migration_backfills_the_existing_rows(pg_url):
    engine = make_engine(pg_url)
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0019")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO clients (id, name, locale, timezone, allow_service_notifications,"
                          " allow_marketing_notifications, created_at, updated_at)"
                          " VALUES (1, 'A', 'ru', 'UTC', true, true, now(), now())"))
        conn.execute(_INSERT, {"n": 50, "tag": "old"})
        conn.execute(text(_MOVES[0].replace("LIMIT 7", "LIMIT 30")))
        conn.execute(text(_MOVES[1].replace("LIMIT 5", "LIMIT 20")))
    upgrade(engine)
    factory = make_session_factory(engine)
    with engine.connect() as conn:
        truth = _truth(conn)
    assert sum(n for n, _w, _s in truth.values()) == 50
    assert _same(_summary(factory), truth), (_summary(factory), truth)
    engine.dispose()
