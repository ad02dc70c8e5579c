"""``vestnik demo``: all of Vestnik in one process, on a laptop, in seconds.

Real code paths end to end; only the far ends are local:

- SQLite in ``data_dir`` (migrated by the same Alembic scripts as production);
- Dramatiq's in-process broker with real worker threads, the real relay and
  the scheduler's ticks as threads (``vestnik.workers.embedded.EmbeddedStack``);
- a fake Telegram Bot API and an SMTP server on free local ports, which
  capture what would have been sent; the bot's updates are read by the real
  long-polling loop (``vestnik.workers.poller``), so "Connect Telegram" in the
  profile works end to end: its deep link opens a stand-in for the Telegram
  app (``webapp/demo_sent.py``) whose Start button queues ``/start <token>``
  in the fake Bot API;
- a demo CRM (``webapp/democrm.py``) whose buttons run real CRM transactions
  that ``emit`` events, and a "What was sent" page.

``build_demo`` starts everything and returns a :class:`Demo` handle (tests
use it directly); ``run_demo`` wraps it for the command line.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import Engine
from werkzeug.serving import BaseWSGIServer, make_server

from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory, session_scope
from vestnik.shared.errors import VestnikError
from vestnik.shared.migrate import upgrade
from vestnik.shared.models import AdminUser, utcnow
from vestnik.shared.seeds import install_default_templates

log = logging.getLogger("vestnik.demo")

DEMO_BOT_TOKEN = "1000001:vestnik-demo"  # noqa: S105 - the fake Bot API's token, nothing real
DEMO_BOT_USERNAME = "vestnik_demo_bot"  # what the fake answers in getMe; the profile's deep links name it
#: the long poll of the demo's bot loop: short, so stopping the demo never waits long
BOT_POLL_TIMEOUT_S = 1


class PortInUse(VestnikError):
    """The demo's port is taken."""

    def __init__(self, host: str, port: int, why: str) -> None:
        self.host, self.port = host, port
        super().__init__(f"cannot listen on {host}:{port}: {why}")

# The embedded stack sets process-wide state (the worker runtime, Dramatiq's
# global broker): two demos in one process would serve each other's work.
_active_lock = threading.Lock()
_active_url: str | None = None  # the running demo's URL; "(starting)" while it starts


@dataclass
class Demo:
    """A running demo; ``stop()`` (or leaving the ``with`` block) ends every part of it."""

    settings: Settings
    url: str
    db_path: Path
    app: Flask
    engine: Engine
    bot_api: Any
    smtp: Any
    stack: Any
    server: BaseWSGIServer
    bot: Any = None  # the BotPoller reading the fake Bot API's updates
    _threads: list[threading.Thread] = field(default_factory=list)
    _stopped: bool = False
    admin_password: str = ""  # the demo admin's, new at every start (shown in the banner)

    def stop(self) -> None:
        """Stop accepting requests, then the workers, then the sinks; safe to call twice."""
        global _active_url
        if self._stopped:
            return
        self._stopped = True
        steps = (
            ("web server", self._stop_server),
            ("bot poller", self._stop_bot),
            ("embedded stack", self.stack.stop),
            ("fake Bot API", self.bot_api.stop),
            ("SMTP sink", self.smtp.stop),
            ("database", self.engine.dispose),
        )
        for name, step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001 - stop the rest regardless
                log.exception("stopping the %s failed", name, extra={"action": "demo.stop_failed"})
        with _active_lock:
            if _active_url == self.url:
                _active_url = None

    def _stop_server(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _stop_bot(self) -> None:
        if self.bot is not None:
            self.bot.stop()
            with self.bot.busy:  # the update in hand is finished; the long poll ends by itself
                pass
            self.bot.channel.close()

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def demo_settings(*, database_url: str, telegram_api_base: str, smtp_port: int, public_url: str,
                  log_level: str = "WARNING") -> Settings:
    """Production defaults, except what a single laptop process needs."""
    return Settings(
        database_url=database_url,
        broker_url="stub://",  # Dramatiq's in-process broker
        redis_url="",  # in-memory limiter: one process
        telegram_token=DEMO_BOT_TOKEN,
        telegram_api_base=telegram_api_base,
        telegram_bot_username=DEMO_BOT_USERNAME,
        smtp_url=f"smtp://127.0.0.1:{smtp_port}",
        email_from="Vestnik Demo <demo@vestnik.local>",
        secret_key=secrets.token_urlsafe(32),  # fresh per run: nothing to configure, nothing to leak
        public_url=public_url,
        telegram_rate_per_s=30,
        # The sink is local: Yandex's daily quota would only make the demo stall.
        email_rate_per_min=600,
        email_rate_per_hour=10_000,
        email_rate_per_day=100_000,
        retry_base_delay_s=2.0,
        scheduler_tick_s=0.5,
        relay_poll_interval_s=0.2,
        log_level=log_level,
    )


def build_demo(
    data_dir: str | os.PathLike[str] = "var/demo",
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    worker_threads: int = 4,
    log_level: str = "WARNING",
) -> Demo:
    """Prepare the database, start the sinks, the embedded stack and the web server.

    ``port=0`` picks a free port (tests).  On failure everything already
    started is stopped again before the error propagates.  One demo per
    process: a second call while one runs raises VestnikError.
    """
    global _active_url
    with _active_lock:
        if _active_url is not None:
            raise VestnikError(f"a demo is already running in this process {_active_url}; stop it first")
        _active_url = "(starting)"
    try:
        demo = _start(data_dir, host=host, port=port, worker_threads=worker_threads, log_level=log_level)
    except BaseException:
        with _active_lock:
            _active_url = None
        raise
    with _active_lock:
        _active_url = demo.url
    return demo


def _start(data_dir: str | os.PathLike[str], *, host: str, port: int, worker_threads: int, log_level: str) -> Demo:
    from vestnik.shared.fakes.botapi import FakeBotApi
    from vestnik.shared.fakes.smtp import FakeSmtpServer
    from vestnik.webapp import create_app, demo_sent, democrm
    from vestnik.webapp.demo_seed import seed_clients, seed_crm
    from vestnik.webapp.democrm_models import DemoBase
    from vestnik.workers.channels.telegram import TelegramChannel
    from vestnik.workers.embedded import EmbeddedStack
    from vestnik.workers.poller import BotPoller

    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    db_path = data / "vestnik.db"
    database_url = f"sqlite:///{db_path}"

    listener = _listen(host, port)  # first, so a busy port fails before anything starts
    bound_port = listener.getsockname()[1]
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - display only
    url = f"http://{shown_host}:{bound_port}"

    cleanup: list[Any] = [listener.close]
    try:
        bot_api = FakeBotApi(token=DEMO_BOT_TOKEN, username=DEMO_BOT_USERNAME).start()
        cleanup.append(bot_api.stop)
        smtp = FakeSmtpServer().start()
        cleanup.append(smtp.stop)
        settings = demo_settings(database_url=database_url, telegram_api_base=bot_api.url,
                                 smtp_port=smtp.port, public_url=url, log_level=log_level)

        engine = make_engine(database_url)
        cleanup.append(engine.dispose)
        upgrade(engine)
        DemoBase.metadata.create_all(engine)  # the pretend CRM's own tables
        factory = make_session_factory(engine)
        with session_scope(factory) as session:
            install_default_templates(session)
            seed_clients(session)
            seed_crm(session, now=utcnow(), school_tz=settings.default_timezone)
            admin_password = _demo_admin(session)
            _demo_chats(session, bot_api, settings)

        stack = EmbeddedStack(settings, worker_threads=worker_threads).start()
        cleanup.append(stack.stop)
        # The bot's side of "Connect Telegram": `vestnik bot`'s loop, reading the fake's getUpdates.
        bot = BotPoller(settings, factory, TelegramChannel.from_settings(settings), poll_timeout_s=BOT_POLL_TIMEOUT_S)
        bot_thread = threading.Thread(target=bot.run, name="vestnik-demo-bot", daemon=True)
        bot_thread.start()
        cleanup.append(bot.stop)

        # The page stays open for hours: let its CSRF token live as long as the session.
        app = create_app(settings, session_factory=factory, config={"WTF_CSRF_TIME_LIMIT": None})
        app.register_blueprint(democrm.bp)
        demo_sent.init_app(app, bot_api=bot_api, smtp=smtp)

        server = make_server(host, bound_port, app, threaded=True, fd=listener.fileno())
        listener.close()  # the server holds its own duplicate of the socket
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the live page polls every 2 s
        thread = threading.Thread(target=server.serve_forever, name="vestnik-demo-web", daemon=True)
        thread.start()
    except BaseException:
        for undo in reversed(cleanup):
            try:
                undo()
            except Exception:  # noqa: BLE001
                log.exception("cleanup after a failed start failed")
        raise
    return Demo(settings=settings, url=url, db_path=db_path, app=app, engine=engine, bot_api=bot_api,
                smtp=smtp, stack=stack, server=server, bot=bot, _threads=[thread, bot_thread],
                admin_password=admin_password)


#: a teachers' group and the school's channel in the fake Telegram, registered as recipients
DEMO_CHATS = ((-1001000000001, "supergroup", "Учителя (демо)", None),
              (-1001000000002, "channel", "Новости школы (демо)", "school_demo_news"))


def _demo_chats(session: Any, bot_api: Any, settings: Any) -> None:
    """The bot is in a group and a channel of the fake Telegram; both are registered (Groups and channels
    in the admin), verified through the fake Bot API like real ones."""
    from vestnik.workers import chats
    from vestnik.workers.channels.telegram import TelegramChannel

    channel = TelegramChannel.from_settings(settings)
    try:
        for chat_id, kind, title, username in DEMO_CHATS:
            bot_api.add_chat(chat_id, kind, title, username=username)
            chats.verify(session, channel, str(chat_id), actor="demo")
    finally:
        channel.close()


DEMO_ADMIN_EMAIL = "admin@vestnik.demo"
DEMO_CLIENT_EMAIL = "olga.petrova@example.ru"  # a seeded client without Telegram: the one to connect
DEMO_ADMIN_CHAT_ID = "9000001"  # "send test to me" lands in the fake Telegram, on the sent page


def _demo_admin(session: Any) -> str:
    """The demo's admin, with a fresh password each start (never a fixed one), returned for the banner."""
    from sqlalchemy import select
    from werkzeug.security import generate_password_hash

    password = secrets.token_urlsafe(9)
    user = session.scalar(select(AdminUser).where(AdminUser.email == DEMO_ADMIN_EMAIL))
    if user is None:
        user = AdminUser(email=DEMO_ADMIN_EMAIL, role="admin")
        session.add(user)
    user.password_hash = generate_password_hash(password)
    user.session_token = secrets.token_hex(16)
    user.telegram_chat_id = user.telegram_chat_id or DEMO_ADMIN_CHAT_ID
    return password


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(host, port, exc.strerror or str(exc)) from None
    sock.listen(128)
    return sock


def run_demo(
    host: str = "127.0.0.1",
    port: int = 8000,
    data_dir: str = "var/demo",
    open_seconds: float | None = None,
) -> int:
    """Run the demo until Ctrl-C, SIGTERM, or ``open_seconds`` have passed; return 0."""
    demo = build_demo(data_dir, host=host, port=port, log_level=os.environ.get("VESTNIK_LOG_LEVEL", "WARNING"))
    stop = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        # Explicit handlers: a shell starts background jobs with SIGINT ignored,
        # and a container stops us with SIGTERM; both mean "stop cleanly".
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    print(_banner(demo, open_seconds), flush=True)
    deadline = None if open_seconds is None else time.monotonic() + open_seconds
    try:
        while not stop.wait(0.25):
            if deadline is not None and time.monotonic() >= deadline:
                break
    except KeyboardInterrupt:  # a handler installed by an embedding program
        pass
    finally:
        print("\nstopping the demo...", flush=True)
        demo.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print("stopped.", flush=True)
    return 0


def demo_pages(admin_password: str | None = None) -> list[tuple[str, str, str]]:
    """(name, path, what to do there) of the demo's pages: the banner and the CRM page list the same."""
    sign_in = f"{DEMO_ADMIN_EMAIL} / {admin_password}" if admin_password else (
        f"sign in as {DEMO_ADMIN_EMAIL}, password in the terminal")
    return [
        ("Demo CRM", "/", 'press "Cancel lesson"'),
        ("What was sent", "/sent", "Telegram messages, emails, notifications, outbox"),
        ("Admin", "/admin/", sign_in),
        ("Client profile", "/me", f"sign in as {DEMO_CLIENT_EMAIL} (the link arrives on What was sent), "
                                  "then Connect Telegram"),
    ]


def _banner(demo: Demo, open_seconds: float | None) -> str:
    until = (f"It stops by itself after {open_seconds:g} s." if open_seconds is not None
             else "Press Ctrl-C to stop.")
    lines = [(name, f"{demo.url}{path}", what) for name, path, what in demo_pages(demo.admin_password)]
    width = max(len(url) for _, url, _ in lines)
    return "\n".join([
        "",
        "Vestnik demo is running (everything in this process; nothing leaves this computer).",
        "",
        *(f"  {name:<15} {url:<{width}}  {what}" for name, url, what in lines),
        f"  {'Health':<15} {demo.url}/readyz",
        "",
        f"  Database        {demo.db_path}  (SQLite: sqlite3 {demo.db_path})",
        f"  Fake Telegram   {demo.bot_api.url}  (Bot API, token {DEMO_BOT_TOKEN})",
        f"  Local SMTP      127.0.0.1:{demo.smtp.port}",
        "",
        f"{until} Data stays in {demo.db_path.parent}; delete it to start afresh.",
        "",
    ])
