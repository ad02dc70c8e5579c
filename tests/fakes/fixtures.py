"""Fixtures for the far ends: the fake Telegram Bot API and a real SMTP server."""

from __future__ import annotations

import pytest

from shared.fakes.botapi import FakeBotApi
from shared.fakes.smtp import FakeSmtpServer


@pytest.fixture
def bot_api():
    with FakeBotApi() as api:
        yield api


@pytest.fixture
def smtp_server():
    with FakeSmtpServer() as server:
        yield server
