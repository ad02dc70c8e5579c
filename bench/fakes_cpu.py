"""CPU per message of the test fakes alone: the fake Bot API and the SMTP sink.

``bench.throughput`` and ``bench.delivery_cpu`` count the fakes' CPU with the product's, and on the
two-core machine every millisecond the fakes spend is one the worker does not get.  This bench runs
each fake in a child process of its own and sends it ``--messages`` messages through the product's
own channel clients (``workers/channels``: ``http.client`` with keep-alive for Telegram, the SMTP
steps driven by hand for email) from ``--threads`` sending threads, and prints the child's CPU
(user + system, ``/proc``) per message.  The messages are shaped like ``lesson_cancelled``'s default
templates (Telegram HTML; email text + HTML with the one-click unsubscribe headers).

``--sink aiosmtpd`` (the default) measures :class:`~vestnik.shared.fakes.smtp.FakeSmtpServer`, the
server the tests use; ``--sink lean`` the bench's lean sink (:class:`~vestnik.shared.fakes.smtp.LeanSmtpSink`).

Run: ``.venv/bin/python -m bench.fakes_cpu --messages 3000``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import time
from typing import Any

from bench.common import Report, run
from bench.throughput import _cpu_s

TELEGRAM_TEXT = ("❌ <b>Занятие отменено</b>\nРобототехника, 25.11.2026 16:00\n"
                 "Причина: преподаватель заболел")
EMAIL_HTML = ("<p>Здравствуйте, Client {n}!</p><p>Занятие <b>Робототехника</b> 25.11.2026 16:00 отменено. "
              "Причина: преподаватель заболел.</p><hr><p style=\"color:#888;font-size:12px\">Вы получили это "
              "письмо, потому что учитесь в нашей школе. <a href=\"https://school.example/u/{n}\">Отписаться"
              "</a></p>")
EMAIL_TEXT = ("Здравствуйте, Client {n}!\n\nЗанятие Робототехника 25.11.2026 16:00 отменено. Причина: "
              "преподаватель заболел.\n\n---\nВы получили это письмо, потому что учитесь в нашей школе. "
              "Отписаться: https://school.example/u/{n}\n")


def _serve(kind: str, queue: Any) -> None:
    if kind == "telegram":
        from vestnik.shared.fakes.botapi import FakeBotApi

        with FakeBotApi() as bot:
            queue.put((bot.url, bot.token))
            while True:
                time.sleep(3600)  # until the bench kills this process
    from vestnik.shared.fakes import smtp as fakes

    with (fakes.LeanSmtpSink() if kind == "lean" else fakes.FakeSmtpServer()) as smtp:
        queue.put((smtp.url, None))
        while True:
            time.sleep(3600)


def _channel(kind: str, url: str, token: str | None) -> Any:
    from vestnik.shared.config import parse_smtp_url
    from vestnik.workers.channels.email import EmailChannel
    from vestnik.workers.channels.telegram import TelegramChannel

    if kind == "telegram":
        return TelegramChannel(token=token or "", api_base=url)
    return EmailChannel(smtp=parse_smtp_url(url), email_from="Школа <school@example.com>")


def _message(kind: str, n: int) -> Any:
    from vestnik.shared.messages import RenderedMessage
    from vestnik.shared.unsubscribe import one_click_headers

    if kind == "telegram":
        return RenderedMessage(notification_id=n, text=TELEGRAM_TEXT)
    return RenderedMessage(notification_id=n, text=EMAIL_TEXT.format(n=n), html=EMAIL_HTML.format(n=n),
                           subject="Занятие «Робототехника» 25.11.2026 16:00 отменено",
                           headers=one_click_headers(f"https://school.example/u/{n}"))


def measure(report: Report, kind: str, messages: int, threads: int) -> None:
    queue: Any = multiprocessing.Queue()
    child = multiprocessing.Process(target=_serve, args=(kind, queue), daemon=True)
    child.start()
    try:
        url, token = queue.get(timeout=60)
        channel = _channel(kind, url, token)
        address = "100001" if kind == "telegram" else "client1@example.com"
        failures: list[BaseException] = []

        def send(first: int) -> None:
            try:
                for n in range(first, messages, threads):
                    channel.send(address, _message(kind, n))
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        channel.send(address, _message(kind, 0))  # connect outside the measurement
        before, wall = _cpu_s(child.pid), time.perf_counter()
        workers = [threading.Thread(target=send, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        cpu, wall = _cpu_s(child.pid) - before, time.perf_counter() - wall
        channel.close()
        if failures:
            raise failures[0]
    finally:
        child.kill()
    name = {"telegram": "fake Bot API", "email": "SMTP sink (aiosmtpd)", "lean": "lean SMTP sink"}[kind]
    report.add(f"{name}: CPU", cpu * 1000 / messages, "ms/message")
    report.add(f"{name}: rate", messages / wall, "messages/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages to each fake")
    parser.add_argument("--threads", type=int, default=4, help="sending threads (one connection each)")
    parser.add_argument("--sink", choices=("aiosmtpd", "lean", "both"), default="both")
    parser.add_argument("--only", choices=("telegram", "email"), default=None)
    args = parser.parse_args()
    os.environ.setdefault("VESTNIK_LOG_LEVEL", "WARNING")
    report = Report("bench.fakes_cpu", "CPU per message of the fake Bot API and the SMTP sink, each in its own "
                    "process, driven by the product's channel clients",
                    size=f"{args.messages} messages each, {args.threads} sending threads")
    if args.only != "email":
        measure(report, "telegram", args.messages, args.threads)
    if args.only != "telegram":
        for sink in (("email", "lean") if args.sink == "both" else ("email" if args.sink == "aiosmtpd" else "lean",)):
            measure(report, sink, args.messages, args.threads)
    return report.finish()


if __name__ == "__main__":
    run(main)
