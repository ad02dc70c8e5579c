"""workers/senders.py: a group of sends handed over together goes out once each, over every thread."""

from __future__ import annotations

import threading
import time

from vestnik.workers.channels.base import DeliveryError, RenderedMessage
from vestnik.workers.senders import SenderPool


class _Channel:
    name = "fake"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def send(self, address: str, message: RenderedMessage) -> str:
        if address == "slow":
            time.sleep(0.2)
        if address == "bad":
            raise DeliveryError.permanent("refused")
        with self.lock:
            self.sent.append((address, threading.current_thread().name))
        return f"id-{address}"


def test_submit_all_sends_each_once_in_order_of_results_and_a_slow_one_holds_up_only_its_thread():
    channel = _Channel()
    pool = SenderPool(channel, 4)  # type: ignore[arg-type]
    try:
        addresses = ["slow", *[str(i) for i in range(30)], "bad"]
        futures = pool.submit_all([(a, RenderedMessage(notification_id=n, text="x"), None)
                                   for n, a in enumerate(addresses)])
        results = [f.result(timeout=5) for f in futures]
    finally:
        pool.close()
    assert [r.external_id for r in results[:-1]] == [f"id-{a}" for a in addresses[:-1]]
    assert results[-1].error is not None and results[-1].error.reason == "refused"
    assert sorted(a for a, _ in channel.sent) == sorted(addresses[:-1])
    # while one thread waited on the slow send (the first taken), another thread took all the rest
    assert channel.sent[-1][0] == "slow"
    assert channel.sent[-1][1] not in {thread for a, thread in channel.sent[:-1]}
