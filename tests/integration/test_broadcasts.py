"""Broadcast targeting, counting and expansion on both backends (no broker: the functions directly)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from vestnik.shared.models import AuditLog, Broadcast, Client, ClientGroup, ClientTag, Notification
from vestnik.shared.seeds import install_default_templates
from vestnik.shared.targeting import Targeting, parse_client_ids
from vestnik.workers import broadcasts
from vestnik.workers.audience import Selection, count, sample
from vestnik.workers.broadcasting import expand_batch, feed

PACE = {"telegram": 30.0, "email": 1.0}
DATA = {"title": "Новости", "text": "Кружок переезжает"}


def _client(i: int, **kw) -> Client:
    values = dict(id=i, name=f"Client {i}", email=f"c{i}@example.com", telegram_chat_id=str(1000 + i), locale="ru")
    values.update(kw)
    return Client(**values)


@pytest.fixture
def school(session_factory):
    """30 clients: group "Робототехника" = 1..20, tag vip = even ids; a few with odd preferences."""
    with session_factory() as s:
        install_default_templates(s)
        for i in range(1, 31):
            kw = {}
            if i == 3:
                kw = {"notifications_telegram_enabled": False}
            if i == 4:
                kw = {"email": None}
            if i == 5:
                kw = {"allow_service_notifications": False}
            if i == 6:
                kw = {"allow_marketing_notifications": True}
            if i == 7:
                kw = {"email": "C1@Example.com "}  # the same mailbox as client 1: one email
            if i == 8:
                kw = {"telegram_unreachable_reason": "Forbidden: bot was blocked by the user"}
            if i == 9:
                kw = {"locale": "en", "last_active_at": datetime(2026, 11, 1, tzinfo=UTC)}
            s.add(_client(i, **kw))
        s.flush()
        s.add_all([ClientGroup(name="Робототехника", client_id=i) for i in range(1, 21)])
        s.add_all([ClientTag(tag="vip", client_id=i) for i in range(2, 31, 2)])
        s.add_all([ClientGroup(name="Тест", client_id=i) for i in (25, 26)])
        s.commit()
    return session_factory


def _new(s, **kw) -> Broadcast:
    args = dict(name="News", template_code="ANNOUNCEMENT", channels=["telegram", "email"], category="service",
                targeting={"groups": ["Робототехника"]}, initiator="admin:1", data=DATA)
    args.update(kw)
    return broadcasts.create(s, **args)


def _expand_all(factory, bid) -> None:
    while not expand_batch(factory, bid, batch_size=4).done:
        pass


def _rows(factory, bid) -> list[tuple[int, str, str]]:
    with factory() as s:
        return sorted(s.execute(select(Notification.recipient_id, Notification.channel,
                                       Notification.recipient_address).where(Notification.broadcast_id == bid)))


def test_count_applies_preferences_reachability_and_one_message_per_address(school):
    with school() as s:
        b = _new(s)
        c = count(s, broadcasts.selection(b))
    # 20 in the group; 5 refuses service: 19 clients.  Telegram: 19 minus 3 (off) minus 8 (blocked) = 17.
    # Email: 19 minus 4 (none) minus 7 (shares client 1's mailbox) = 17.
    assert c.by_channel == {"telegram": 17, "email": 17}
    assert c.messages == 34 and c.clients == 19
    assert c.sentence() == "You will send 34 messages to 19 clients: 17 Telegram, 17 email"


def test_marketing_reaches_only_clients_who_opted_in(school):
    with school() as s:
        c = count(s, Selection(Targeting(groups=("Робототехника",)), ("telegram", "email"),
                               broadcasts.Category.marketing))
    assert c.clients == 1 and c.by_channel == {"telegram": 1, "email": 1}  # client 6


@pytest.mark.parametrize("targeting, expected", [
    ({"tags": ["vip"]}, 15),  # every even id has some channel left (4: Telegram, 8: email)
    ({"tags": ["vip", "nope"], "all_tags": True}, 0),
    ({"locales": ["en"]}, 1),
    ({"active_since": "2026-10-01"}, 1),
    ({"groups": ["Робототехника"], "tags": ["vip"]}, 10),
])
def test_filters_combine(school, targeting, expected):
    with school() as s:
        b = _new(s, targeting=targeting)
        clients = count(s, broadcasts.selection(b)).clients
    assert clients == expected


def test_expansion_creates_exactly_the_count_and_is_idempotent(school):
    with school() as s:
        b = _new(s)
        shown = count(s, broadcasts.selection(b))
        broadcasts.send_all(s, b, "admin:1", typed=str(shown.messages))
        s.commit()
        bid = b.id
    _expand_all(school, bid)
    rows = _rows(school, bid)
    assert len(rows) == shown.messages
    assert len({r[0] for r in rows}) == shown.clients
    assert ("email", "c1@example.com") in {(r[1], r[2]) for r in rows}
    # A restart from scratch (cursor lost) creates nothing twice.
    with school() as s:
        s.get(Broadcast, bid).expand_cursor = 0
        s.get(Broadcast, bid).expand_done = False
        s.commit()
    _expand_all(school, bid)
    assert _rows(school, bid) == rows


def test_typed_confirmation_must_match_the_count(school):
    with school() as s:
        b = _new(s)
        with pytest.raises(broadcasts.BroadcastError, match="type the number of messages, 34"):
            broadcasts.send_all(s, b, "admin:1", typed="30")
        assert b.status == "draft"


def test_test_stage_then_full_send_reaches_each_client_once(school):
    with school() as s:
        b = _new(s, test_size=3)
        whole, test = broadcasts.counts(s, b)
        broadcasts.send_test(s, b, "admin:1")
        s.commit()
        bid = b.id
    _expand_all(school, bid)
    first = _rows(school, bid)
    assert len(first) == test.messages and {r[0] for r in first} == {1, 2, 3}
    with school() as s:
        b = s.get(Broadcast, bid)
        b.test_done_at = datetime.now(UTC)
        rest, _ = broadcasts.counts(s, b)  # recomputed after the test: what the full send adds
        assert rest.messages == whole.messages - test.messages
        with pytest.raises(broadcasts.BroadcastError, match=f"type the number of messages, {rest.messages}"):
            broadcasts.send_all(s, b, "admin:1", typed=str(whole.messages))
        broadcasts.send_all(s, b, "admin:1", typed=str(rest.messages))
        assert b.planned_messages == whole.messages
        s.commit()
    _expand_all(school, bid)
    rows = _rows(school, bid)
    assert len(rows) == whole.messages and len(set(rows)) == len(rows)


def test_a_test_stage_larger_than_the_selection_is_the_whole_send_and_completes_it(school):
    with school() as s:
        b = _new(s, test_size=1000)
        whole, test = broadcasts.counts(s, b)
        assert test == whole  # never more than the selection holds
        broadcasts.send_test(s, b, "admin:1")
        s.commit()
        bid = b.id
    _expand_all(school, bid)
    with school() as s:  # every message of the test stage delivered
        for n in s.scalars(select(Notification).where(Notification.broadcast_id == bid)):
            n.status = "sent"
        s.commit()
    feed(school, bid, PACE)
    with school() as s:
        b = s.get(Broadcast, bid)
        assert b.status == "completed" and broadcasts.counts(s, b)[0].messages == 0
        with pytest.raises(broadcasts.BroadcastError):
            broadcasts.send_all(s, b, "admin:1", typed="0")


def test_test_group_stage_and_sample_for_preview(school):
    with school() as s:
        b = _new(s, test_group="Тест")
        _, test = broadcasts.counts(s, b)
        assert test.clients == 2
        ids = [cid for cid, _ in sample(s, broadcasts.selection(b), limit=5)]
        assert ids == [1, 2, 3, 4, 6]  # 5 refuses service


def test_feed_hands_over_at_the_pace_and_cancel_stops_the_rest(school):
    with school() as s:
        b = _new(s)
        broadcasts.send_all(s, b, "admin:1", typed="34")
        s.commit()
        bid = b.id
    _expand_all(school, bid)
    fed = feed(school, bid, {"telegram": 2.0, "email": 1.0}, lookahead_s=2.0)
    channels = [ch for _, ch, _ in fed.handed]
    assert channels.count("telegram") == 4 and channels.count("email") == 2
    assert not feed(school, bid, {"telegram": 2.0, "email": 1.0}, lookahead_s=2.0).handed  # all in flight
    with school() as s:
        canceled = broadcasts.cancel(s, s.get(Broadcast, bid), "admin:1")
        s.commit()
        assert canceled == 34
        assert s.scalars(select(AuditLog.action)).all() == ["broadcast.start", "broadcast.cancel"]


def test_failure_rate_pauses_the_broadcast(school):
    with school() as s:
        b = _new(s, max_failure_rate=0.2)
        broadcasts.send_all(s, b, "admin:1", typed="34")
        s.commit()
        bid = b.id
    _expand_all(school, bid)
    feed(school, bid, PACE)  # the stage's first tick (nothing is handed over before it) starts the window
    with school() as s:
        ids = s.scalars(select(Notification.id).where(Notification.broadcast_id == bid)
                        .order_by(Notification.id).limit(20)).all()
        for n in s.scalars(select(Notification).where(Notification.id.in_(ids))):
            n.status = "failed" if n.id % 2 else "sent"
        s.commit()
    feed(school, bid, PACE)
    with school() as s:
        b = s.get(Broadcast, bid)
        assert b.status == "paused" and "of the last 20 messages failed" in b.paused_reason
        assert s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.actor == "system")) == 1


def _finish(factory, bid, n: int, failed_every: int | None) -> None:
    """The next ``n`` waiting rows finish: sent, or failed every ``failed_every``-th."""
    with factory() as s:
        rows = s.scalars(select(Notification).where(Notification.broadcast_id == bid,
                                                    Notification.status.in_(["pending", "processing"]))
                         .order_by(Notification.id).limit(n)).all()
        assert len(rows) == n
        for i, row in enumerate(rows):
            row.status = "failed" if failed_every and i % failed_every == 0 else "sent"
        s.commit()


def test_after_a_resume_only_new_failures_count(school):
    with school() as s:
        b = _new(s, max_failure_rate=0.2)
        broadcasts.send_all(s, b, "admin:1", typed="34")
        s.commit()
        bid = b.id
    _expand_all(school, bid)
    feed(school, bid, PACE)
    _finish(school, bid, 20, failed_every=2)  # a fault: half of them fail
    feed(school, bid, PACE)
    with school() as s:
        assert s.get(Broadcast, bid).status == "paused"
        broadcasts.resume(s, s.get(Broadcast, bid), "admin:1")  # the fault is fixed
        s.commit()
    feed(school, bid, PACE)
    _finish(school, bid, 7, failed_every=None)  # all sent now; the 10 old failures are history
    feed(school, bid, PACE)
    with school() as s:
        assert s.get(Broadcast, bid).status == "running", s.get(Broadcast, bid).paused_reason


def test_a_new_stage_judges_only_its_own_failures(school):
    with school() as s:
        b = _new(s, max_failure_rate=0.2)
        b.health = {"sent": 0, "failed": 0}
        broadcasts.begin_stage(b, "all", datetime.now(UTC))
        assert b.health is None  # the next tick starts the window at that moment's counts


def test_completion_after_everything_finished(school):
    with school() as s:
        b = _new(s, targeting={"locales": ["en"]})
        broadcasts.send_all(s, b, "admin:1", typed="2")
        s.commit()
        bid = b.id
    _expand_all(school, bid)
    with school() as s:
        for n in s.scalars(select(Notification).where(Notification.broadcast_id == bid)):
            n.status = "sent"
        s.commit()
    feed(school, bid, PACE, now=datetime.now(UTC) + timedelta(seconds=1))
    with school() as s:
        assert s.get(Broadcast, bid).status == "completed"


def test_parse_client_ids():
    assert parse_client_ids("id\n1\n2,Anna\n3 4\n2") == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="line 2"):
        parse_client_ids("1\nанна")  # not a client id (a UUID or "x1" would be one)


def test_clients_import_sets_groups_tags_and_activity(session_factory):
    import io

    from vestnik.shared.clients_import import import_clients

    csv_text = ("id,name,email,telegram_chat_id,locale,timezone,groups,tags,last_active_at\n"
                "1,Анна,anna@example.com,1001,ru,Europe/Moscow,Робототехника;Шахматы,vip,2026-11-01\n"
                "2,Bob,bob@example.com,,en,Europe/London,Шахматы,,\n")
    with session_factory() as s:
        report = import_clients(s, io.StringIO(csv_text))
        s.commit()
        assert report.errors == [] and report.created == 2
        again = "id,name,email,telegram_chat_id,locale,timezone,groups\n1,Анна,anna@example.com,1001,ru,UTC,Шахматы\n"
        import_clients(s, io.StringIO(again))
        s.commit()
        groups = sorted(s.execute(select(ClientGroup.name, ClientGroup.client_id)))
        tags = sorted(s.execute(select(ClientTag.tag, ClientTag.client_id)))
        assert groups == [("Шахматы", 1), ("Шахматы", 2)]  # replaced for client 1
        assert tags == [("vip", 1)]  # no tags column the second time: left alone
        assert s.get(Client, 1).last_active_at == datetime(2026, 11, 1, tzinfo=UTC)


def test_an_automatic_broadcast_cannot_skip_its_confirmation(school):
    with school() as s:
        b = _new(s, mode="auto")
        with pytest.raises(broadcasts.BroadcastError, match="starts with Start"):
            broadcasts.send_test(s, b, "admin:1")


def test_pause_stops_the_expansion_and_resume_restarts_it(school):
    with school() as s:
        b = _new(s)
        broadcasts.send_all(s, b, "admin:1", typed="34")
        s.commit()
        bid = b.id
    assert not expand_batch(school, bid, batch_size=4).done
    with school() as s:
        broadcasts.pause(s, s.get(Broadcast, bid), "admin:1")
        s.commit()
    assert expand_batch(school, bid, batch_size=4).done  # stops while paused ...
    assert not feed(school, bid, PACE).handed  # ... and nothing is handed over
    with school() as s:
        assert not s.get(Broadcast, bid).expand_done
        broadcasts.resume(s, s.get(Broadcast, bid), "admin:1")
        s.commit()
    assert feed(school, bid, PACE).expand  # the next tick starts the expansion again
    _expand_all(school, bid)
    assert len(_rows(school, bid)) == 34


def test_an_admin_broadcast_runs_in_the_embedded_demo(tmp_path):
    """SQLite, the in-process broker and worker threads: the demo's groups, the same machinery."""
    from tests.processes import wait_until
    from vestnik.shared.db import make_session_factory
    from vestnik.webapp.demo import build_demo

    demo = build_demo(tmp_path / "demo", port=0, worker_threads=2)
    try:
        factory = make_session_factory(demo.engine)
        with factory() as s:
            b = _new(s, targeting={"groups": ["Шахматы"]})  # demo clients 1, 3, 5
            whole = count(s, broadcasts.selection(b))
            broadcasts.send_all(s, b, "admin:1", typed=str(whole.messages))
            s.commit()
            bid = b.id
        def status() -> str:
            with factory() as s:
                return s.get(Broadcast, bid).status

        wait_until(lambda: status() == "completed", 30, message="completed")
        with factory() as s:
            rows = s.execute(select(Notification.recipient_id, Notification.channel, Notification.status)
                             .where(Notification.broadcast_id == bid)).all()
        assert len(rows) == whole.messages and {st for _, _, st in rows} == {"sent"}
        assert {r for r, _, _ in rows} == {1, 3, 5}
        assert sum("Кружок переезжает" in m["text"] for m in demo.bot_api.messages()) == whole.by_channel["telegram"]
    finally:
        demo.stop()


def test_a_test_group_gets_the_test_and_everyone_else_the_rest_once(school):
    with school() as s:
        b = _new(s, test_group="Тест")  # clients 25 and 26, outside the selection
        whole, test = broadcasts.counts(s, b)
        broadcasts.send_test(s, b, "admin:1")
        s.commit()
        bid = b.id
    _expand_all(school, bid)
    assert {r[0] for r in _rows(school, bid)} == {25, 26} and len(_rows(school, bid)) == test.messages
    with school() as s:
        s.get(Broadcast, bid).test_done_at = datetime.now(UTC)
        broadcasts.send_all(s, s.get(Broadcast, bid), "admin:1", typed=str(whole.messages))
        s.commit()
    _expand_all(school, bid)
    assert len(_rows(school, bid)) == test.messages + whole.messages
