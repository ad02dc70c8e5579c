"""The admin's notification history on a production-sized table.

Fills a dedicated PostgreSQL database (``vestnik_bench_history`` by default,
created and migrated here) with 2,000,000 notifications in one
``INSERT ... SELECT generate_series`` (secondary indexes dropped during the fill
and rebuilt after it, as a bulk load would), spread realistically over clients,
channels, statuses, event types, initiators and a year of dates, then signs in
through the Flask test client and times the history's first page and filtered
pages: each page's first request (cold: its rows are not in PostgreSQL's
cache yet) and ``--repeat`` more, printing p50 and p95 of the repeats and the
max of all (the cold first one included).  Every SQL statement the pages run
is recorded: the script fails if any counts rows of ``notifications``.

Run: ``.venv/bin/python -m bench.admin_history`` (about 3 minutes the first time;
``--reuse`` keeps an already filled database; ``--explain`` prints each page's plan).
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, event, text
from werkzeug.security import generate_password_hash

from bench.common import PG_ADMIN_URL, CouldNotMeasure, Report, pct, run
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.migrate import upgrade
from vestnik.shared.models import AdminUser

PASSWORD = "bench-password"

# Weighted choices as cumulative thresholds on random().
EVENTS = [("lesson_reminder", "LESSON_REMINDER", 0.33), ("invoice_created", "INVOICE_CREATED", 0.15),
          ("payment_success", "PAYMENT_SUCCESS", 0.12), ("lesson_cancelled", "LESSON_CANCELLED", 0.08),
          ("lesson_rescheduled", "LESSON_RESCHEDULED", 0.07), ("booking_created", "BOOKING_CONFIRMED", 0.08),
          ("client_registered", "ONBOARDING_1", 0.05), ("mass_broadcast", "ANNOUNCEMENT", 0.04),
          ("feedback_received", "FEEDBACK_THANKS", 0.03), ("balance_changed", "LOW_BALANCE", 0.03),
          ("booking_cancelled", "BOOKING_CANCELLED", 0.015), ("job_finished", "JOB_FINISHED", 0.005)]
STATUSES = [("sent", 0.90), ("failed", 0.04), ("canceled", 0.035), ("pending", 0.02), ("processing", 0.005)]
ERRORS = ["Forbidden: bot was blocked by the user", "554 5.7.1 Message rejected as spam",
          "gave up after 5 attempts: HTTP 502", "Bad Request: chat not found"]


def _case(expr: str, choices: list[tuple[str, float]]) -> str:
    parts, acc = [], 0.0
    for value, weight in choices[:-1]:
        acc += weight
        parts.append(f"WHEN {expr} < {acc:.4f} THEN '{value}'")
    return f"CASE {' '.join(parts)} ELSE '{choices[-1][0]}' END"


def fill(url: str, rows: int, clients: int) -> float:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    t0 = time.perf_counter()
    with engine.connect() as conn:
        conn.execute(text("SET maintenance_work_mem = '256MB'"))
        conn.execute(text("SELECT setseed(0.42)"))
        conn.execute(text(
            "INSERT INTO clients (id, name, locale, timezone, allow_service_notifications,"
            " allow_marketing_notifications, created_at, updated_at)"
            " SELECT g, 'Client ' || g,"
            " CASE WHEN g % 10 = 0 THEN 'en' ELSE 'ru' END, 'Europe/Moscow', true, g % 3 = 0,"
            " now() - interval '400 days', now() FROM generate_series(1, :n) g"), {"n": clients})
        conn.execute(text(
            "INSERT INTO client_addresses (client_id, channel, address, enabled, created_at, updated_at)"
            " SELECT g, 'email', 'client' || g || '@example.com', true, now(), now() FROM generate_series(1, :n) g"
            " UNION ALL SELECT g, 'telegram', (100000 + g)::text, true, now(), now()"
            " FROM generate_series(1, :n) g"), {"n": clients})
        # Secondary indexes go during the fill; those behind a constraint (the primary key, the unique
        # origin and broadcast keys) stay, since dropping them would drop the constraint.
        indexes = conn.execute(text(
            "SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid"
            " WHERE x.indrelid = 'notifications'::regclass"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)")).all()
        for name, _ in indexes:
            conn.execute(text(f'DROP INDEX "{name}"'))
        event_case = _case("r_event", [(e, w) for e, _c, w in EVENTS])
        code_case = _case("r_event", [(c, w) for _e, c, w in EVENTS])
        status_case = _case("r_status", STATUSES)
        seconds_per_row = 365 * 86400 / rows
        # A few clients get many messages (a power law), as in a school with active families.
        conn.execute(text(f"""
            INSERT INTO notifications (recipient_id, channel, recipient_address, event_type, template_code,
                payload_json, status, attempts, last_error, created_at, updated_at, sent_at, initiator, category,
                locale, step, delivery_uncertain, body, key, send_at)
            SELECT recipient, channel,
                   CASE WHEN channel = 'email' THEN 'client' || recipient || '@example.com'
                        ELSE (100000 + recipient)::text END,
                   {event_case}, {code_case}, '{{}}'::jsonb, status,
                   CASE WHEN status IN ('sent', 'failed') THEN 1 ELSE 0 END,
                   CASE WHEN status = 'failed' THEN (ARRAY{ERRORS!r})[1 + (g % 4)] END,
                   created, created, CASE WHEN status = 'sent' THEN created + interval '2 seconds' END,
                   CASE WHEN r_init < 0.005 THEN 'admin:' || (1 + g % 5) ELSE 'system' END,
                   'service', 'ru', 'notice', false,
                   'Здравствуйте! Занятие «Робототехника» ' || to_char(created, 'DD.MM')
                       || ' — уведомление №' || g,
                   'lesson:' || (g % 50000),
                   CASE WHEN status = 'pending' THEN now() + interval '1 day' END
            FROM (
                SELECT *, {status_case} AS status
                FROM (
                    SELECT g, random() AS r_event, random() AS r_init, random() AS r_status,
                           1 + floor(power(random(), 2) * :clients)::bigint AS recipient,
                           CASE WHEN random() < 0.7 THEN 'telegram' ELSE 'email' END AS channel,
                           now() - ((:rows - g) * :spr) * interval '1 second' AS created
                    FROM generate_series(1, :rows) g
                ) a
            ) s
        """), {"rows": rows, "clients": clients, "spr": seconds_per_row})
        for _, ddl in indexes:
            conn.execute(text(ddl))
        conn.execute(text("VACUUM ANALYZE notifications"))
        conn.execute(text("ANALYZE clients"))
    engine.dispose()
    return time.perf_counter() - t0


def prepare(name: str, rows: int, clients: int, reuse: bool) -> str:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if exists and reuse:
            engine = make_engine(url)
            upgrade(engine)  # new indexes of later migrations, if any
            with engine.connect() as c:
                have = c.scalar(text("SELECT reltuples::bigint FROM pg_class WHERE relname = 'notifications'"))
            engine.dispose()
            if have and have >= rows * 0.95:
                print(f"reusing {name}: about {have:,} notifications")
                admin.dispose()
                return url
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    print(f"filling {name} with {rows:,} notifications for {clients:,} clients …", flush=True)
    print(f"filled in {fill(url, rows, clients):.1f} s")
    return url


def _login(client) -> None:
    page = client.get("/admin/login")
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    resp = client.post("/admin/login", data={"email": "bench@vestnik.test", "password": PASSWORD,
                                             "csrf_token": csrf})
    assert resp.status_code == 302, resp.status_code


def pages(busy_client: int) -> list[tuple[str, str]]:
    now = datetime.now(UTC)
    fmt = "%Y-%m-%d %H:%M:%S"

    def between(a: datetime, b: datetime) -> str:
        return f"{a.strftime(fmt)}+to+{b.strftime(fmt)}"

    day = now - timedelta(days=200)
    return [
        ("first page", ""),
        ("page 200 (the last one allowed)", "page=199"),
        ("client (the busiest)", f"flt0_client_id_equals={busy_client}"),
        ("client (a quiet one)", "flt0_client_id_equals=19000"),
        ("status failed", "flt0_status_equals=failed"),
        ("status processing (rare)", "flt0_status_equals=processing"),
        ("channel email", "flt0_channel_equals=email"),
        ("event type invoice_created", "flt0_event_type_equals=invoice_created"),
        ("event type job_finished (rare)", "flt0_event_type_equals=job_finished"),
        ("one day, 200 days ago", f"flt0_created_utc_between={between(day, day + timedelta(days=1))}"),
        ("initiator: any admin", "flt0_initiator_is=admin"),
        ("initiator: admin:3", "flt0_initiator_is=admin:3"),
        ("failed + email + last 7 days", "flt0_status_equals=failed&flt1_channel_equals=email"
                                         f"&flt2_created_utc_between={between(now - timedelta(days=7), now)}"),
        ("client + failed", f"flt0_client_id_equals={busy_client}&flt1_status_equals=failed"),
        ("job_finished + admin", "flt0_event_type_equals=job_finished&flt1_initiator_is=admin"),
        ("dashboard", None),
    ]


def history_parser(rows: int, db: str) -> argparse.ArgumentParser:
    """The options every bench on a filled history database takes (this one's and bench.history_export's)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=rows)
    parser.add_argument("--clients", type=int, default=20_000)
    parser.add_argument("--db", default=db)
    parser.add_argument("--reuse", action="store_true", help="keep an already filled database")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    return parser


def on_history(args: argparse.Namespace, measure: Callable[[str, argparse.Namespace], int]) -> int:
    """``measure(url, args)`` on the database filled (or reused) as ``args`` say, dropped after with --drop."""
    url = prepare(args.db, args.rows, args.clients, args.reuse)
    try:
        return measure(url, args)
    finally:
        if args.drop:
            admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)'))
            admin.dispose()


def signed_in(url: str):
    """(engine, session factory, a test client of the admin signed in as the bench's admin)."""
    from vestnik.webapp import create_app

    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as s:
        if not s.query(AdminUser).filter_by(email="bench@vestnik.test").first():
            s.add(AdminUser(email="bench@vestnik.test", password_hash=generate_password_hash(PASSWORD)))
            s.commit()
    app = create_app(Settings(database_url=url, secret_key="b" * 32), session_factory=factory)
    client = app.test_client()
    _login(client)
    return engine, factory, client


def main() -> int:
    parser = history_parser(rows=2_000_000, db="vestnik_bench_history")
    parser.add_argument("--repeat", type=int, default=20, help="requests per page after the first (cold) one")
    parser.add_argument("--explain", action="store_true", help="print the plan of each page's list query")
    return on_history(parser.parse_args(), measure)


def explain_all(engine, statements: list[tuple[str, object]]) -> None:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of each statement of a page, the costliest first."""
    plans = []
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        for sql, params in statements:
            if not re.match(r"\s*SELECT", sql) or "admin_users" in sql:
                continue
            with raw.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                plan = [r[0] for r in cur.fetchall()]
            took = float(re.search(r"Execution Time: ([\d.]+)", plan[-1]).group(1))
            plans.append((took, " ".join(sql.split())[:160], plan))
    print(f"    {len(plans)} statements, {sum(t for t, _s, _p in plans):.1f} ms in the database in all")
    for took, sql, plan in sorted(plans, key=lambda p: -p[0])[:4]:
        print(f"    -- {took:.1f} ms: {sql}")
        print("    " + "\n    ".join(plan[:12]))


def measure(url: str, args: argparse.Namespace) -> int:
    engine, factory, client = signed_in(url)
    with factory() as s:
        total = s.execute(text("SELECT reltuples::bigint FROM pg_class WHERE relname = 'notifications'")).scalar()
    busy = 1  # the busiest client by construction (ids drawn from a power law)
    statements: list[tuple[str, object]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        statements.append((statement, parameters))

    report = Report("bench.admin_history", "the admin's notification history: each page's first request (cold) "
                    "and repeats, through the Flask test client on PostgreSQL",
                    size=f"about {total:,} notifications, {args.clients:,} clients; 1 + {args.repeat} requests "
                         "per page")
    print(f"{'page':42} {'first':>8} {'p50':>8} {'p95':>8} {'max':>8} {'rows':>5}  statements")
    counted = []
    for label, query in pages(busy):
        path = "/admin/" if query is None else f"/admin/notification/?{query}"
        times = []
        for _ in range(1 + args.repeat):
            statements.clear()
            t0 = time.perf_counter()
            resp = client.get(path)
            times.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 200:
                raise CouldNotMeasure(f"{path} answered {resp.status_code}")
        rows = resp.text.count('name="rowid"') if query is not None else 0
        counts = [s for s, _p in statements if re.search(r"count\(", s, re.I) and "notifications" in s]
        if query is not None and counts:
            counted.append((label, counts))
        warm = times[1:] or times
        print(f"{label:42} {times[0]:8.1f} {pct(warm, 50):8.1f} {pct(warm, 95):8.1f} {max(times):8.1f} {rows:5}  "
              f"{len(statements)}")
        report.add(f"{label}: p50", pct(warm, 50), "ms")
        report.add(f"{label}: p95", pct(warm, 95), "ms", goal=200)
        report.add(f"{label}: max (first, cold, included)", max(times), "ms")
        if args.explain and query is None:  # the dashboard: every statement's plan, most costly first
            explain_all(engine, statements)
        if args.explain and query is not None:
            sql, params = next((s, p) for s, p in statements if "FROM notifications" in s and "LIMIT" in s)
            with engine.connect() as conn:
                raw = conn.connection.dbapi_connection
                with raw.cursor() as cur:
                    cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                    plan = [r[0] for r in cur.fetchall()]
            print("    " + "\n    ".join(plan[:14]))
    engine.dispose()
    if counted:
        raise CouldNotMeasure(f"COUNT over notifications on a history page: {counted}")
    report.note("no COUNT over notifications on any history page (simple pager)")
    return report.finish()

if __name__ == "__main__":
    run(main)
