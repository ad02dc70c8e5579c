"""What a string client id (a UUID) costs against an integer id: handling events and upserting clients.

An integer id is its own row key, resolved without the database; a string id
is found by ``clients.crm_id`` (one query per handled batch:
``shared/client_ids.py``).  Interleaved rounds on one PostgreSQL database:

- handling: a batch of ``--batch`` one-recipient ``lesson_cancelled`` events
  naming integer clients, then the same naming UUID clients
  (``workers.handling.handle_events``, the worker's path);
- upserting: ``vestnik_upsert_client`` of a new client, integer id against
  UUID (a UUID's key comes from a sequence).

Reported: each kind's time per event / per client (mean, p50) and the ratios
(UUID / integer).  No goal is set; the figure says what a CRM with UUIDs pays.

Run: ``.venv/bin/python -m bench.string_ids --rounds 40 --batch 100``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from sqlalchemy import text

from bench.common import CouldNotMeasure, Report, run, scratch_database
from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import OutboxEvent
from vestnik.workers.channels import build_channels
from vestnik.workers.handling import handle_events

LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}
KINDS = ("integer", "uuid")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40, help="batches of each kind")
    parser.add_argument("--batch", type=int, default=100, help="events per handled batch")
    parser.add_argument("--warmup", type=int, default=2, help="rounds of each kind left out first")
    args = parser.parse_args()
    clients = args.batch
    handling: dict[str, list[float]] = {k: [] for k in KINDS}
    upsert: dict[str, list[float]] = {k: [] for k in KINDS}
    channels = build_channels(Settings())
    with scratch_database() as url:
        engine = make_engine(url)
        factory = make_session_factory(engine)
        ids = {"integer": list(range(1, clients + 1)), "uuid": [str(uuid.uuid4()) for _ in range(clients)]}
        with engine.begin() as conn:
            for kind in KINDS:
                for i, client_id in enumerate(ids[kind]):
                    conn.execute(text("SELECT vestnik_upsert_client(:id, CAST(:fields AS jsonb))"),
                                 {"id": str(client_id), "fields": f'{{"email": "c{i}-{kind}@example.com"}}'})
        for r in range(args.rounds + args.warmup):
            for kind in KINDS:
                with factory() as s:
                    events = [emit(s, "lesson_cancelled", recipients=[client_id], data=LESSON)
                              for client_id in ids[kind]]
                    s.commit()
                t0 = time.perf_counter()
                results = handle_events(factory, channels, events)
                t1 = time.perf_counter()
                if any(res.status != "processed" or not res.created for res in results):
                    raise CouldNotMeasure(f"{kind}: an event created nothing ({results[0]})")
                new_id = str(10_000_000 + r) if kind == "integer" else str(uuid.uuid4())
                with engine.begin() as conn:
                    t2 = time.perf_counter()
                    conn.execute(text("SELECT vestnik_upsert_client(:id, CAST(:fields AS jsonb))"),
                                 {"id": new_id, "fields": '{"name": "Новый"}'})
                    t3 = time.perf_counter()
                if r >= args.warmup:
                    handling[kind].append((t1 - t0) * 1000 / args.batch)
                    upsert[kind].append((t3 - t2) * 1000)
        with factory() as s:
            unknown = s.query(OutboxEvent).filter(OutboxEvent.unknown_clients.is_not(None)).count()
        engine.dispose()
    if unknown:
        raise CouldNotMeasure(f"{unknown} events named unknown clients")
    report = Report("bench.string_ids", "handling one-recipient events and upserting a new client, integer ids "
                    "against UUIDs, interleaved, PostgreSQL",
                    size=f"{args.rounds} rounds of {args.batch} events (and one new client) of each kind")
    for kind in KINDS:
        report.add(f"{kind}: handling per event, mean", statistics.fmean(handling[kind]), "ms")
        report.add(f"{kind}: handling per event, p50", statistics.median(handling[kind]), "ms")
        report.add(f"{kind}: vestnik_upsert_client of a new client, p50", statistics.median(upsert[kind]), "ms")
    report.add("uuid / integer: handling (means)",
               statistics.fmean(handling["uuid"]) / statistics.fmean(handling["integer"]), "x")
    report.add("uuid / integer: new-client upsert (medians)",
               statistics.median(upsert["uuid"]) / statistics.median(upsert["integer"]), "x")
    return report.finish()


if __name__ == "__main__":
    run(main)
