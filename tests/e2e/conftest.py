"""The production stack for end-to-end tests: PostgreSQL, RabbitMQ, Redis, and
real ``vestnik`` processes; Telegram and email go to the local fakes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.e2e.runs import add_clients
from tests.processes import Proc, running, vestnik
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import Notification, NotificationStatus, utcnow
from vestnik.shared.seeds import install_default_templates

CLIENTS = """id,name,email,telegram_chat_id,locale,timezone,telegram_enabled,email_enabled
1,Анна,anna@example.com,1001,ru,Europe/Moscow,true,true
2,Bob,bob@example.com,1002,en,Europe/London,false,true
3,Вера,vera@example.com,1003,ru,Asia/Yekaterinburg,true,false
4,Глеб,gleb@example.com,1004,ru,Europe/Moscow,false,false
"""


@dataclass
class Stack:
    env: dict[str, str]
    factory: sessionmaker[Session]
    log_dir: Path

    @contextmanager
    def run(self, *names: str, worker_processes: int = 1) -> Iterator[list[Proc]]:
        """Start the named processes (relay, worker, scheduler); stop them (SIGTERM) at the end."""
        procs = []
        for name in names:
            args = [name]
            if name == "worker":
                args += ["--processes", str(worker_processes), "--threads", "4"]
            procs.append(vestnik(name, *args, env=self.env, log_dir=self.log_dir))
        with running(procs):
            yield procs

    def count(self, *where) -> int:
        with self.factory() as s:
            return s.scalar(select(func.count()).select_from(Notification).where(*where)) or 0

    def rows(self, *where) -> list[Notification]:
        with self.factory() as s:
            return list(s.scalars(select(Notification).where(*where).order_by(Notification.id)))

    def travel(self, *where) -> int:
        """Time travel: make the matching pending rows due now (instead of waiting days)."""
        with self.factory() as s, s.begin():
            return s.execute(
                update(Notification)
                .where(Notification.status == NotificationStatus.pending.value, *where)
                .values(send_at=utcnow())
                .execution_options(synchronize_session=False)
            ).rowcount


@pytest.fixture
def bare_stack(pg_url, amqp_vhost_url, redis_url, redis_client, bot_api, smtp_server, tmp_path) -> Stack:
    """The stack's wiring and the default templates, no clients: for tests that bring their own."""
    env = {
        "VESTNIK_DATABASE_URL": pg_url,
        "VESTNIK_BROKER_URL": amqp_vhost_url,
        "VESTNIK_REDIS_URL": redis_url,
        "VESTNIK_TELEGRAM_TOKEN": bot_api.token,
        "VESTNIK_TELEGRAM_API_BASE": bot_api.url,
        "VESTNIK_SMTP_URL": f"smtp://127.0.0.1:{smtp_server.port}",
        "VESTNIK_EMAIL_FROM": "School <robot@school.test>",
        "VESTNIK_RETRY_BASE_DELAY_S": "0.2",
        "VESTNIK_SECRET_KEY": "x" * 32,
        "VESTNIK_PUBLIC_URL": "https://school.test",
        # One gunicorn worker, not four: each builds the app (seconds of CPU on a busy machine) and a stop
        # waits for all of them; a test about several web processes sets its own.
        "VESTNIK_WEB_WORKERS": "1",
    }
    factory = make_session_factory(make_engine(pg_url))
    with factory() as s:
        install_default_templates(s)
        s.commit()
    return Stack(env, factory, tmp_path)


@pytest.fixture
def stack(bare_stack) -> Stack:
    """The stack with four clients (see CLIENTS)."""
    add_clients(bare_stack.factory, CLIENTS)
    return bare_stack


from tests.e2e.runs import chaos  # noqa: E402, F401 - the fixture, for every e2e module
