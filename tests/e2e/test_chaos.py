"""Crashes and restarts on the production shape, judged by a delivery ledger.

"Committed means delivered, once": every test emits a run of events (one per
client, a marker unique to each in the text), breaks something, repairs it,
and then compares what the fake Bot API and SMTP server received with what
was committed (``vestnik.shared.fakes.ledger``): nothing lost, nothing twice, nothing
unexpected.  A message whose fate a crash made unknowable is not resent; it
is flagged "delivery uncertain" and may be missing, never doubled.
"""

from __future__ import annotations

import random
import signal

import pytest
from sqlalchemy import func, select

from tests.e2e.runs import assert_ledger, emit_run, settled, uncertain_rows, worker
from tests.processes import running, vestnik, wait_until
from vestnik.shared.config import Settings
from vestnik.shared.fakes.ledger import Expected, received
from vestnik.shared.models import Notification
from vestnik.workers.delivery import CHUNK_ROWS

#: the most rows one chunk holds (16 spread over 0.2 s of slots, VESTNIK_DELIVERY_CHUNK_ROWS when their
#: slots are one instant, as with the chaos runs' lifted limits)
MOST_IN_A_CHUNK = max(CHUNK_ROWS, Settings().delivery_chunk_rows)

pytestmark = pytest.mark.slow

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
    # What the dead worker's pumps had in the provider's hands: at most a chunk each (4 threads).
    assert 1 <= len(uncertain) <= 4 * MOST_IN_A_CHUNK
    assert_ledger(chaos, bot_api, smtp_server, expected, max_uncertain=4 * MOST_IN_A_CHUNK)
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
    assert_ledger(chaos, bot_api, smtp_server, expected, max_uncertain=3 * 4 * MOST_IN_A_CHUNK)  # 3 worker kills


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


def test_kill_9_in_the_middle_of_a_batchs_sends_leaves_at_most_that_chunk_uncertain(chaos, bot_api, smtp_server):
    """One pump at a time (one thread), batches of 40 in chunks: the worker dies right after the first
    chunk's sends, before recording them.  That chunk is "delivery uncertain" (the provider has it,
    it is not resent); the rest of the batch, claimed but not sent, goes back and out exactly once."""
    expected = emit_run(chaos, 0, 40)
    with running([vestnik("relay", "relay", env=chaos.env, log_dir=chaos.log_dir)]):
        # Chunks of 8: the lifted limits put every slot at one instant, which would make the batch one chunk.
        crashing = vestnik("worker-crash", "worker", "--processes", "1", "--threads", "1",
                           env={**chaos.env, "VESTNIK_FAULT_POINTS": "worker.after_send",
                                "VESTNIK_DELIVERY_CHUNK_ROWS": "8"}, log_dir=chaos.log_dir)
        wait_until(lambda: crashing.popen.poll() is not None, 60, message="the worker to crash mid-batch")
        crashing.stop()
        first_chunk = len(received(bot_api, smtp_server))
        assert 1 <= first_chunk <= 8
        with chaos.factory() as s:  # the rest of its batch: claimed, never sent, no attempt
            claimed = s.scalar(select(func.count()).select_from(Notification)
                               .where(Notification.status == "processing"))
        assert claimed > first_chunk
        with running([worker(chaos, "worker"), vestnik("scheduler", "scheduler", env=chaos.env,
                                                       log_dir=chaos.log_dir)]):
            wait_until(lambda: settled(chaos, 40), 90, message="the run to settle (the lease runs out)")
    assert len(uncertain_rows(chaos)) == first_chunk  # exactly the chunk in the provider's hands
    assert_ledger(chaos, bot_api, smtp_server, expected, max_uncertain=first_chunk)
