"""Fixtures for the far ends: the fake Telegram Bot API and the SMTP sink.

Both are the same in-process servers the embedded demo uses (``vestnik.shared.fakes``),
started fresh for each test on a free port of 127.0.0.1 and stopped after it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vestnik.shared.fakes.botapi import FakeBotApi
from vestnik.shared.fakes.smtp import FakeSmtpServer


@pytest.fixture
def bot_api() -> Iterator[FakeBotApi]:
    """A started fake Bot API: ``bot_api.url`` is the API base, ``bot_api.token`` the token it accepts."""
    with FakeBotApi() as api:
        yield api


@pytest.fixture
def smtp_server() -> Iterator[FakeSmtpServer]:
    """A started SMTP sink without AUTH: ``smtp_server.url`` is a ``VESTNIK_SMTP_URL``."""
    with FakeSmtpServer() as server:
        yield server
