"""Every statement that locks rows locks them in one pass, whatever the planner knows of the tables.

Issue 12's one-recipient burst: the delivery claim was ``UPDATE ... WHERE id IN (SELECT ... LIMIT n
FOR UPDATE SKIP LOCKED)``.  On tables whose statistics were stale (a burst of new rows; a new
database), PostgreSQL joined that by a nested loop which ran the pick, sort and lock included, once
per outer row: 250,000-780,000 buffer visits and 1-1.7 s for a claim of 100 rows, most of
PostgreSQL's CPU in the burst.

The class, walked two ways:

- the source: every place that takes row locks (``with_for_update``, or SQL text saying ``FOR
  UPDATE``) is found by reading the package's syntax trees, and must be one this test runs;
- the plans: each of those places runs on PostgreSQL against never-analysed tables holding a few
  hundred rows, with ``auto_explain`` sending every plan (actual row counts) to the session, and no
  ``LockRows`` node in any of them may run more than once.
"""

from __future__ import annotations

import ast
import json
import pathlib
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from vestnik.outbox import emit
from vestnik.outbox.queries import begin_claim, claim_unpublished
from vestnik.shared import client_sync
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import Client, Notification, utcnow
from vestnik.shared.seeds import install_default_templates
from vestnik.workers import broadcasts, notifications
from vestnik.workers.broadcasting import expand_batch, feed
from vestnik.workers.channels import build_channels
from vestnik.workers.handling import handle_events

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("outbox", "shared", "workers", "webapp", "vestnik")
LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}
CLIENTS = 200

#: every top-level definition that takes row locks -> the step of the scenario below that runs it
COVERED = {
    "outbox/queries.py:_statements": "relay claim",
    "shared/client_sync.py:upsert": "client upsert",
    "workers/handling.py:_READ_EVENTS_LOCKED": "handling",
    "workers/notifications.py:_claim_pg": "claim due (a pump)",  # and the claim by ids (inline delivery)
    "workers/notifications.py:_one_of_picked": "release due (the scheduler)",  # and hand_over, below
    "workers/broadcasts.py:lock": "broadcast feed",
}


def _locking_definitions() -> set[str]:
    """``file:name`` of each top-level function or constant whose code takes row locks."""
    found = set()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for top in tree.body:
                if isinstance(top, ast.Expr):  # the module's docstring
                    continue
                docstrings = {id(n.body[0].value) for n in ast.walk(top)
                              if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                              and n.body and isinstance(n.body[0], ast.Expr)}
                if any(_locks(n, docstrings) for n in ast.walk(top)):
                    name = top.name if hasattr(top, "name") else ast.unparse(top.targets[0])  # type: ignore[attr-defined]
                    found.add(f"{path.relative_to(ROOT)}:{name}")
    return found


def _locks(node: ast.AST, docstrings: set[int]) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "with_for_update":
        return True
    if isinstance(node, ast.keyword) and node.arg == "with_for_update":
        return True
    return (isinstance(node, ast.Constant) and isinstance(node.value, str) and "FOR UPDATE" in node.value.upper()
            and id(node) not in docstrings)


def test_the_scenario_runs_every_place_that_locks_rows():
    found = _locking_definitions()
    assert "workers/notifications.py:_claim_pg" in found  # the walker sees an f-string's SQL
    assert found == set(COVERED), (
        f"places that lock rows and are not run by test_every_lock_runs_once: {sorted(found - set(COVERED))}; "
        f"gone: {sorted(set(COVERED) - found)}")


class Plans:
    """The plans ``auto_explain`` sends to this engine's sessions, as JSON."""

    def __init__(self, engine) -> None:  # noqa: ANN001
        self.plans: list[dict] = []
        event.listen(engine, "connect", self._connect)

    def _connect(self, dbapi_connection, _record) -> None:  # noqa: ANN001
        dbapi_connection.add_notice_handler(self._notice)
        with dbapi_connection.cursor() as cur:
            cur.execute("LOAD 'auto_explain'")
            for name, value in (("log_min_duration", "0"), ("log_analyze", "on"), ("log_format", "json"),
                                ("log_level", "notice"), ("log_nested_statements", "on")):
                cur.execute(f"SET auto_explain.{name} = '{value}'")
        dbapi_connection.commit()

    def _notice(self, diagnostic) -> None:  # noqa: ANN001
        message = diagnostic.message_primary or ""
        if "plan:" in message:
            self.plans.append(json.loads(message.split("plan:", 1)[1]))

    def take(self) -> list[dict]:
        taken, self.plans = self.plans, []
        return taken


def _lock_nodes(node: dict) -> list[dict]:
    found = [node] if node.get("Node Type") == "LockRows" else []
    for child in node.get("Plans", ()):
        found += _lock_nodes(child)
    return found


def test_every_lock_runs_once(pg_url, bot_api):
    engine = make_engine(pg_url)
    plans = Plans(engine)
    factory = make_session_factory(engine)
    settings = Settings(telegram_token=bot_api.token, telegram_api_base=bot_api.url)
    channels = build_channels(settings)
    seen: dict[str, list[int]] = {}

    def step(name: str) -> None:
        """What ran since the last step: its locking plans' loop counts."""
        loops = [n["Actual Loops"] for p in plans.take() for n in _lock_nodes(p["Plan"])]
        seen[name] = loops
        assert loops, f"{name}: no plan with row locks was seen (auto_explain did not report?)"
        assert max(loops) == 1, f"{name}: a LockRows node ran {max(loops)} times in one statement"

    try:
        with factory() as s:
            install_default_templates(s)
            s.add_all([Client(id=i, name=f"C{i}", telegram_chat_id=str(5000 + i), email=f"c{i}@example.com",
                              locale="ru") for i in range(1, CLIENTS + 1)])
            s.commit()
            events = [emit(s, "lesson_cancelled", recipients=[i], data=LESSON) for i in range(1, CLIENTS // 2 + 1)]
            events.append(emit(s, "lesson_cancelled", recipients=list(range(CLIENTS // 2 + 1, CLIENTS + 1)),
                               data=LESSON))
            s.commit()
        plans.take()

        with engine.connect() as conn:
            begin_claim(conn)
            assert len(claim_unpublished(conn, 1000)) == len(events)
            conn.rollback()
        step("relay claim")

        results = handle_events(factory, channels, events)
        assert sum(len(r.created) for r in results) == 2 * CLIENTS
        step("handling")

        now = utcnow()
        with factory() as s:
            ids = list(s.scalars(select(Notification.id).where(Notification.channel == "email")
                                 .order_by(Notification.id).limit(60)))
            assert len(notifications.claim(s, ids, now=now, lease_s=60)) == 60
            s.commit()
        step("claim by ids (inline delivery)")
        with factory() as s:
            assert len(notifications.claim_due(s, "telegram", limit=100, now=now, lease_s=60)) == 100
            s.commit()
        step("claim due (a pump)")
        with factory() as s:
            released = notifications.release_due(s, now + timedelta(seconds=1), redrive_after_s=0, limit=1000)
            assert len(released) == 2 * CLIENTS - 160  # every pending row: the claimed ones are processing
            s.commit()
        step("release due (the scheduler)")

        with factory() as s:
            b = broadcasts.create(s, name="News", template_code="ANNOUNCEMENT", channels=["email"],
                                  category="service", targeting={}, initiator="admin:1",
                                  data={"title": "T", "text": "x"})
            broadcasts.send_all(s, b, "admin:1", typed=str(CLIENTS))
            s.commit()
            bid = b.id
        while not expand_batch(factory, bid).done:
            pass
        plans.take()
        fed = feed(factory, bid, {"email": 100.0}, lookahead_s=3.0)  # locks the broadcast, hands rows over
        assert len(fed.handed) == CLIENTS  # room for 300 (100/s x 3 s): every held row
        step("broadcast feed")

        with factory() as s:
            client_sync.upsert(s, 7, {"name": "Седьмой"})
            s.commit()
        step("client upsert")
    finally:
        for ch in channels.values():
            ch.close()
        engine.dispose()
    assert set(COVERED.values()) <= set(seen)


@pytest.mark.parametrize("statement", ["_CLAIM_DUE_PG", "_CLAIM_IDS_PG"])
def test_the_written_out_claims_lock_in_a_cte(statement):
    """The claims written as SQL text keep the pick in a MATERIALIZED CTE (``_one_of_picked``'s rule)."""
    sql = " ".join(str(getattr(notifications, statement)).split())
    assert sql.startswith("WITH picked AS MATERIALIZED (")
    assert " IN ( SELECT" not in sql
