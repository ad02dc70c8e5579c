"""Limits exact at the receiver: a run at the default limits, counted on the fake providers' clocks.

Production shape: relay, two worker processes and the scheduler, a private Redis, the default
limits (Telegram 30/s, 1/s per chat, 20/min per group chat; email 20/min, 300/h, 480/day).  A
backlog far larger than the limits allow is emitted at once, then the run lasts ``--seconds``.
Printed: the largest count in any sliding window at the fake Bot API (1 s for the bot, 1 s per
chat, 60 s per group chat) and at the SMTP sink (60 s, 3600 s), each against its limit, and the
sending time against the theoretical minimum for the messages that went out.

Run: ``.venv/bin/python -m bench.limits_exact --seconds 300``.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections import defaultdict

from bench.common import CouldNotMeasure, Report, production_stack, run
from vestnik.outbox import emit
from vestnik.shared.clients_import import import_clients

DATA = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}
GROUPS = 10


def max_in_window(times: list[float], window_s: float) -> int:
    """The largest number of events in any half-open window [t, t + window_s)."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window_s:
            j += 1
        best = max(best, i - j + 1)
    return best


STARTUP_S = 180.0  # from the emit to the first message: process start-up, on a loaded machine too


def minimum_s(n: int, limit: int, window_s: float) -> float:
    """The least time from the first to the last of ``n`` sends that a limit of ``limit`` per window allows."""
    return max(0.0, (n - 1) // limit * window_s)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--dump", help="write the arrival times (JSON: telegram [[time, chat]], email [time]) here")
    args = parser.parse_args()
    report = Report("bench.limits_exact", "channel limits at the receiver: the largest count in any sliding "
                    "window at the fake Bot API and SMTP sink, at the default limits, with 2 worker processes",
                    size=f"{args.seconds:g} s of a backlog larger than the limits allow")
    clients = int(35 * args.seconds) + 200  # Telegram can take 30/s: more than that waits
    with production_stack(clients, [("relay",), ("worker", "--processes", "2", "--threads", "8"), ("scheduler",)],
                          limits="default") as stack:
        csv = "id,name,telegram_chat_id,locale,timezone,email_enabled\n" + "".join(
            f"{clients + g + 1},Group {g},-100{g:07d},ru,Europe/Moscow,false\n" for g in range(GROUPS))
        with stack.factory() as s:
            import_clients(s, io.StringIO(csv))
            s.commit()
        with stack.factory() as s:
            for i in range(1, clients + 1, 100):
                emit(s, "lesson_cancelled", recipients=list(range(i, min(i + 100, clients + 1))), data=DATA)
            for n in range(40):  # 40 messages to each group chat: 20 a minute at most
                emit(s, "lesson_cancelled", recipients=[clients + g + 1 for g in range(GROUPS)],
                     data={**DATA, "reason": f"r{n}"})
            s.commit()
        # The run is timed from the first message the fake Bot API takes (the worker processes start
        # first, slower on a busy machine); then the limits decide what goes out meanwhile.
        started = time.monotonic()
        while not stack.bot.messages() and time.monotonic() - started < STARTUP_S:
            time.sleep(0.1)
        if not stack.bot.messages():
            raise CouldNotMeasure(f"nothing reached the fake Bot API within {STARTUP_S:g} s of the emit "
                                  "(the workers did not start sending)")
        time.sleep(args.seconds)
        bot = stack.bot.messages()
        mail = stack.smtp.times()
    if not bot:
        raise CouldNotMeasure("nothing reached the fake Bot API")
    if args.dump:
        with open(args.dump, "w") as f:
            json.dump({"telegram": [[m["time"], m["chat_id"]] for m in bot], "email": list(mail)}, f)
    times = [m["time"] for m in bot]
    per_chat: dict[str, list[float]] = defaultdict(list)
    for m in bot:
        per_chat[m["chat_id"]].append(m["time"])
    groups = {c: t for c, t in per_chat.items() if c.startswith("-")}
    report.add("Telegram: messages", len(bot), "messages")
    report.add("Telegram: most in any 1 s window (limit 30)", max_in_window(times, 1.0), "messages", goal=30)
    report.add("Telegram: most to one chat in any 1 s window (limit 1)",
               max(max_in_window(t, 1.0) for t in per_chat.values()), "messages", goal=1)
    if groups:
        report.add("Telegram: most to one group in any 60 s window (limit 20)",
                   max(max_in_window(t, 60.0) for t in groups.values()), "messages", goal=20)
    span = max(times) - min(times)
    least = minimum_s(len(times), 30, 1.0)
    if least:
        report.add("Telegram: sending time / the minimum", span / least, "x", goal=1.05)
    else:  # fewer messages than one window's limit: pacing cannot be judged from so few
        report.note(f"Telegram: {len(times)} messages fit in one window; sending time against the minimum not judged")
    report.add("email: messages", len(mail), "messages")
    if mail:
        report.add("email: most in any 60 s window (limit 20)", max_in_window(mail, 60.0), "messages", goal=20)
        report.add("email: most in any 3600 s window (limit 300)", max_in_window(mail, 3600.0), "messages",
                   goal=300)
    return report.finish()


if __name__ == "__main__":
    run(main)
