"""Scratch resources for tests, made one ahead and removed afterwards by a thread of the test process.

A fresh PostgreSQL database or RabbitMQ vhost per test costs ~0.3-1.5 s to make and as much to
remove (``CREATE DATABASE``, ``DROP DATABASE``'s checkpoint, ``rabbitmqctl``'s start-up).  Made
while the test before runs, and removed while the test after runs, a test waits for neither.
One thread does both, in the order asked, so at most one resource is being made or removed at
a time per test process.  A removal that fails is the caller's to notice (a sweep at the end).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class MadeAhead:
    """``take()`` a fresh resource (made meanwhile, or now); ``give_back(name)`` removes it later."""

    def __init__(self, kind: str, make: Callable[[int], str], remove: Callable[[str], None]) -> None:
        self.make = make
        self.remove = remove
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"made-ahead-{kind}")
        self.counter = 0
        self.next: Future[str] | None = None

    def _make(self) -> str:
        self.counter += 1  # only the pool's one thread counts
        return self.make(self.counter)

    def take(self) -> str:
        made, self.next = self.next or self.pool.submit(self._make), None
        name = made.result()  # a failure to make it fails this test; the next one tries afresh
        self.next = self.pool.submit(self._make)
        return name

    def give_back(self, name: str) -> None:
        self.pool.submit(self.remove, name)

    def close(self) -> None:
        """Wait for the thread's work, then remove the one made for no test."""
        self.pool.shutdown(wait=True)
        if self.next is not None and self.next.exception() is None:
            self.remove(self.next.result())
