"""Crashes and restarts on the production shape, judged by a delivery ledger.

"Committed means delivered, once": every test emits a run of events (one per
client, a marker unique to each in the text), breaks something, repairs it,
and then compares what the fake Bot API and SMTP server received with what
was committed (``shared.fakes.ledger``): nothing lost, nothing twice, nothing
unexpected.  A message whose fate a crash made unknowable is not resent; it
is flagged "delivery uncertain" and may be missing, never doubled.
"""

from __future__ import annotations

import io
import random
import signal

import pytest
from sqlalchemy import func, select

from outbox import emit
from shared.clients_import import import_clients
from shared.fakes.ledger import Expected, check, received
from shared.models import Notification, OutboxEvent
from tests.processes import running, vestnik, wait_until

pytestmark = pytest.mark.slow

N = 60  # clients, each with Telegram and email: 2 messages per event
CHAOS_ENV = {
    "VESTNIK_TELEGRAM_CHAT_RATE_PER_S": "1000", "VESTNIK_TELEGRAM_RATE_PER_S": "1000",
    "VESTNIK_EMAIL_RATE_PER_MIN": "100000", "VESTNIK_EMAIL_RATE_PER_HOUR": "100000",
    "VESTNIK_EMAIL_RATE_PER_DAY": "100000",
    "VESTNIK_PROCESSING_LEASE_S": "3", "VESTNIK_REDRIVE_AFTER_S": "3", "VESTNIK_RELAY_BATCH_SIZE": "20",
}


@pytest.fixture
def chaos(stack):
    csv = "id,name,email,telegram_chat_id,locale,timezone\n" + "".join(
        f"{100 + i},C{i},c{i}@example.com,{7000 + i},ru,Europe/Moscow\n" for i in range(N))
    with stack.factory() as s:
        import_clients(s, io.StringIO(csv))
        s.commit()
    stack.env.update(CHAOS_ENV)
    return stack


def emit_run(stack, first: int, count: int, per_commit: int = 10) -> list[Expected]:
    """Events ``first .. first+count-1``, each to one client (round robin), in CRM transactions."""
    expected = []
    with stack.factory() as s:
        for n in range(first, first + count):
            client = n % N
            marker = f"Урок-{n:04d}"
            emit(s, "lesson_cancelled", recipients=[100 + client],
                 data={"lesson_title": marker, "starts_at": "2026-12-25T16:00:00+03:00"})
            expected += [Expected("telegram", str(7000 + client), marker),
                         Expected("email", f"c{client}@example.com", marker)]
            if n % per_commit == 0:
                s.commit()
        s.commit()
    return expected


def uncertain_rows(stack) -> list[tuple[str, str, str]]:
    with stack.factory() as s:
        rows = s.execute(select(Notification.channel, Notification.recipient_address, Notification.payload_json)
                         .where(Notification.delivery_uncertain.is_(True))).all()
    return [(channel, address, data["lesson_title"]) for channel, address, data in rows]


def settled(stack, events: int) -> bool:
    """Every event handled and every notification final (sent, or failed/canceled with a reason)."""
    with stack.factory() as s:
        handled = s.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.status == "processed"))
        open_rows = s.scalar(select(func.count()).select_from(Notification).where(
            Notification.status.in_(["pending", "processing"])))
    return handled == events and open_rows == 0


def assert_ledger(stack, bot_api, smtp_server, expected: list[Expected], *, max_uncertain: int = 0):
    report = check(expected, received(bot_api, smtp_server), uncertain_rows(stack))
    print(f"ledger: {report}")
    assert report.clean, report
    assert report.uncertain <= max_uncertain, report
    with stack.factory() as s:  # exactly one row per event and channel: no duplicate rows
        rows = s.execute(select(Notification.event_id, Notification.channel, func.count())
                         .group_by(Notification.event_id, Notification.channel)).all()
    assert len(rows) == len(expected) and all(n == 1 for *_, n in rows)


def worker(stack, name: str, **env: str):
    return vestnik(name, "worker", "--processes", "1", "--threads", "4", env={**stack.env, **env},
                   log_dir=stack.log_dir)


def test_worker_killed_after_committing_rows_before_handing_them_over(chaos, bot_api, smtp_server):
    expected = emit_run(chaos, 0, 30)
    with running([vestnik("relay", "relay", env=chaos.env, log_dir=chaos.log_dir)]):
        crashing = worker(chaos, "worker-crash", VESTNIK_FAULT_POINTS="worker.after_handle_commit")
        wait_until(lambda: crashing.popen.poll() is not None, 60, message="the worker to crash")
        crashing.stop()
        with chaos.factory() as s:  # it died after its commit: rows exist, nothing was handed over
            assert s.scalar(select(func.count()).select_from(Notification)) >= 2
        assert bot_api.messages() == [] and smtp_server.messages() == []
        with running([worker(chaos, "worker"), vestnik("scheduler", "scheduler", env=chaos.env,
                                                       log_dir=chaos.log_dir)]):
            wait_until(lambda: settled(chaos, 30), 90, message="the run to settle")
    assert_ledger(chaos, bot_api, smtp_server, expected)


def test_worker_killed_after_the_provider_accepted_is_flagged_uncertain_not_resent(chaos, bot_api, smtp_server):
    expected = emit_run(chaos, 0, 30)
    with running([vestnik("relay", "relay", env=chaos.env, log_dir=chaos.log_dir)]):
        crashing = worker(chaos, "worker-crash", VESTNIK_FAULT_POINTS="worker.after_send")
        wait_until(lambda: crashing.popen.poll() is not None, 60, message="the worker to crash")
        crashing.stop()
        assert len(received(bot_api, smtp_server)) >= 1  # the provider took it; the worker never recorded it
        with running([worker(chaos, "worker"), vestnik("scheduler", "scheduler", env=chaos.env,
                                                       log_dir=chaos.log_dir)]):
            wait_until(lambda: settled(chaos, 30), 90, message="the run to settle (the lease runs out)")
    uncertain = uncertain_rows(chaos)
    assert 1 <= len(uncertain) <= 4  # what the dead worker's threads had in the provider's hands
    assert_ledger(chaos, bot_api, smtp_server, expected, max_uncertain=4)
    with chaos.factory() as s:
        reasons = s.scalars(select(Notification.last_error).where(Notification.delivery_uncertain.is_(True))).all()
    assert all("delivery uncertain" in r for r in reasons)


def test_kill_9_at_random_moments_loses_and_doubles_nothing(chaos, bot_api, smtp_server):
    rng = random.Random(7)  # a fixed seed: a failure can be replayed
    bot_api.latency_s = 0.02  # a provider call takes time, so kills land mid-send too
    expected: list[Expected] = []
    relay = vestnik("relay", "relay", env=chaos.env, log_dir=chaos.log_dir)
    scheduler = vestnik("scheduler", "scheduler", env=chaos.env, log_dir=chaos.log_dir)
    procs = {"relay": relay, "worker": worker(chaos, "worker-0")}
    try:
        for round_no in range(4):
            expected += emit_run(chaos, round_no * 50, 50)
            target = "relay" if round_no == 2 else "worker"
            # Let it get going, then kill -9 at a random point of the round's work.
            wait_until(lambda: len(received(bot_api, smtp_server)) >= len(expected) - 100 + rng.randint(5, 60),
                       60, message=f"round {round_no} under way")
            procs[target].signal(signal.SIGKILL)
            procs[target].stop()
            procs[target] = (worker(chaos, f"worker-{round_no + 1}") if target == "worker"
                             else vestnik(f"relay-{round_no}", "relay", env=chaos.env, log_dir=chaos.log_dir))
        wait_until(lambda: settled(chaos, 200), 120, message="all 200 events to settle")
    finally:
        for p in [*procs.values(), scheduler, relay]:
            p.stop()
    assert_ledger(chaos, bot_api, smtp_server, expected, max_uncertain=12)


def test_sigterm_lets_in_flight_sends_finish_and_takes_no_new_work(chaos, bot_api, smtp_server):
    bot_api.latency_s = 0.5  # slow provider: there is always something in flight
    expected = emit_run(chaos, 0, 40)
    with running([vestnik("relay", "relay", env=chaos.env, log_dir=chaos.log_dir)]):
        first = worker(chaos, "worker-1")
        wait_until(lambda: len(bot_api.messages()) >= 3, 60, message="sending under way")
        # To the main process only, as `docker stop` does; it forwards SIGTERM to its children once.
        # (A second SIGTERM to a child means "kill now" to Dramatiq; see docs/operations.md.)
        first.popen.send_signal(signal.SIGTERM)
        assert first.popen.wait(timeout=60) == 0  # a clean exit, after finishing what it held
        first.stop()
        with chaos.factory() as s:
            stuck = s.scalar(select(func.count()).select_from(Notification)
                             .where(Notification.status == "processing"))
            left = s.scalar(select(func.count()).select_from(Notification).where(Notification.status == "pending"))
        assert stuck == 0  # nothing abandoned mid-send
        assert left > 0  # and it stopped taking new work
        bot_api.latency_s = 0.0
        with running([worker(chaos, "worker-2"), vestnik("scheduler", "scheduler", env=chaos.env,
                                                         log_dir=chaos.log_dir)]):
            wait_until(lambda: settled(chaos, 40), 90, message="the rest delivered")
    assert_ledger(chaos, bot_api, smtp_server, expected)
