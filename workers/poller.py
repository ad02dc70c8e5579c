"""``vestnik bot``: Telegram updates by long polling, for setups without public HTTPS.

Each update goes through ``vestnik.workers.bot.handle_update`` (the webhook's code
path) in its own transaction; its reply is sent after the commit.  The offset
moves past an update only once it is handled, so updates fetched but not
handled when the process stops come again on the next start (Telegram keeps
unconfirmed updates for 24 hours).

SIGTERM/SIGINT: the update being handled is finished (committed and answered),
then the process exits without waiting for the long poll to return.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from vestnik.shared import heartbeat
from vestnik.shared.bounds import BoundsError
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory, session_scope
from vestnik.shared.logs import configure_logging
from vestnik.workers.bot import handle_update
from vestnik.workers.channels.base import DeliveryError
from vestnik.workers.channels.telegram import TelegramChannel

log = logging.getLogger("vestnik.bot")

ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
#: an update that fails this many times in a row is skipped (logged), so one bad update cannot stop the bot
MAX_UPDATE_FAILURES = 3
MAX_BACKOFF_S = 30.0


class SetupConflict(Exception):
    """getUpdates refused because a webhook is set (409)."""


class BotPoller:
    def __init__(self, settings: Settings, factory: sessionmaker[Session], channel: TelegramChannel, *,
                 poll_timeout_s: int = 25) -> None:
        self.settings = settings
        self.factory = factory
        self.channel = channel
        self.poll_timeout_s = poll_timeout_s
        self.offset: int | None = None
        self.stop_event = threading.Event()
        #: held while one update is being handled; the stopping thread takes it to let that update finish
        self.busy = threading.Lock()
        self._failures: dict[int, int] = {}

    def poll_once(self) -> int:
        """One getUpdates call and the handling of what it returned; the number of updates handled."""
        params: dict[str, Any] = {"timeout": self.poll_timeout_s, "allowed_updates": ALLOWED_UPDATES}
        if self.offset is not None:
            params["offset"] = self.offset
        try:
            updates = self.channel.api_call("getUpdates", **params)
        except DeliveryError as exc:
            if " 409 " in f" {exc.reason} " or "Conflict" in exc.reason:
                raise SetupConflict(exc.reason) from None
            raise
        handled = 0
        for update in updates or []:
            if self.stop_event.is_set():
                break
            with self.busy:
                if self.stop_event.is_set():
                    break
                self._handle(update)
                handled += 1
        return handled

    def _handle(self, update: dict[str, Any]) -> None:
        update_id = int(update.get("update_id", 0))
        try:
            with session_scope(self.factory) as session:
                reply = handle_update(session, update, settings=self.settings)
        except BoundsError as exc:  # malformed: trying again would change nothing
            log.warning("update skipped: %s", exc, extra={"action": "bot.update_skipped", "update_id": update_id})
            reply = None
        except Exception:
            failures = self._failures.get(update_id, 0) + 1
            self._failures[update_id] = failures
            if failures < MAX_UPDATE_FAILURES:
                raise  # the offset stays: the same update comes again
            log.exception("update skipped after repeated failures",
                          extra={"action": "bot.update_skipped", "update_id": update_id})
            reply = None
        self._failures.pop(update_id, None)
        self.offset = update_id + 1
        if reply is not None:
            try:
                self.channel.api_call(reply.method, **reply.params)
            except DeliveryError as exc:
                log.warning("bot reply not sent", extra={"action": "bot.reply_failed", "update_id": update_id,
                                                         "reason": exc.reason})
        log.info("bot update handled", extra={"action": "bot.update", "update_id": update_id})

    def run(self) -> int:
        backoff_s = 1.0
        while not self.stop_event.is_set():
            heartbeat.beat("bot")  # `vestnik health bot`: the loop goes round at least every long poll
            try:
                self.poll_once()
                backoff_s = 1.0
            except SetupConflict as exc:
                log.error("a webhook is set for this bot; getUpdates is refused (%s). Remove it with "
                          "`vestnik bot --delete-webhook` or use the webhook instead", exc,
                          extra={"action": "bot.conflict"})
                return 2
            except Exception as exc:  # noqa: BLE001 - any failure: wait and try again, never die silently
                reason = exc.reason if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
                log.warning("polling failed; retrying in %.0fs", backoff_s,
                            extra={"action": "bot.poll_failed", "reason": reason})
                self.stop_event.wait(backoff_s)
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
        return 0

    def stop(self) -> None:
        self.stop_event.set()


def main(settings: Settings, *, poll_timeout_s: int = 25, delete_webhook: bool = False) -> int:
    configure_logging(settings)
    if not settings.telegram_token:
        log.error("VESTNIK_TELEGRAM_TOKEN is empty: there is no bot to poll", extra={"action": "bot.unconfigured"})
        return 2
    engine = make_engine(settings.database_url)
    channel = TelegramChannel.from_settings(settings)
    poller = BotPoller(settings, make_session_factory(engine), channel, poll_timeout_s=poll_timeout_s)
    if delete_webhook:
        channel.api_call("deleteWebhook")
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(poller.run()), name="bot-poller", daemon=True)

    def _stop(signum: int, frame: Any) -> None:
        poller.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("bot polling started", extra={"action": "bot.start"})
    thread.start()
    while thread.is_alive() and not poller.stop_event.is_set():
        poller.stop_event.wait(0.5)
    # Let the update in hand finish; a long poll in flight is abandoned (its updates are not confirmed).
    with poller.busy:
        pass
    thread.join(timeout=0.5)
    if poller.offset is not None:
        # Confirm what was handled, so a restart does not see it again (a zero-timeout call returns at once).
        try:
            channel.api_call("getUpdates", offset=poller.offset, timeout=0, limit=1)
        except DeliveryError as exc:
            log.warning("could not confirm handled updates", extra={"action": "bot.confirm_failed",
                                                                   "reason": exc.reason})
    log.info("bot polling stopped", extra={"action": "bot.stop"})
    channel.close()
    engine.dispose()
    return result[0] if result else 0
