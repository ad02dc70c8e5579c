"""Delivery of one notification: claim -> render -> send -> record.

- **Claim** is a conditional UPDATE (pending and due -> processing, with a
  lease).  A duplicate message for the same row finds nothing to claim and does
  nothing, so a message is sent at most once.
- **Render** happens just before the send; the exact subject and text are
  stored on the row.  A template error fails only this notification.
- **Send** goes through the channel; every call leaves a ``delivery_attempts``
  row written before the call and closed after it.
- **Record** applies the retry decision (``workers/retry.py``) in one place:
  sent, retry later (pending with a new ``send_at``), failed, or failed with
  ``delivery_uncertain`` when the provider may have accepted it.

The window of invariant 4 is between ``channel.send`` returning and the
record's commit: a crash there leaves the row ``processing`` with an open
attempt; the reaper then marks it uncertain instead of resending.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from vestnik.shared import faults
from vestnik.shared.composer import compose, find_template
from vestnik.shared.config import Settings
from vestnik.shared.errors import TemplateError
from vestnik.shared.models import Category, Client, DeliveryAttempt, Notification, NotificationStatus, utcnow
from vestnik.shared.unsubscribe import marketing_extras
from vestnik.workers import metrics
from vestnik.workers.attachments import fetch_attachment
from vestnik.workers.channels.base import Channel, DeliveryError, Outcome
from vestnik.workers.retry import decide
from vestnik.workers.rules import allows_category, buttons_for, channel_refusal, step_of

log = logging.getLogger("vestnik.delivery")

#: Longer waits than this are kept in the database (``send_at``) and released by
#: the scheduler; shorter ones ride on the broker's delay.  Dramatiq keeps a
#: delayed message unacked in worker memory, and RabbitMQ's consumer_timeout
#: (30 min) would requeue it (dramatiq #827).
MAX_BROKER_DELAY_S = 60.0
#: tries to record a provider's answer when the database connection drops (0.5 s, 1 s, 1.5 s apart)
RECORD_RETRIES = 3


@dataclass(frozen=True)
class Result:
    """What happened; ``requeue_in_s`` is set when the caller must enqueue again."""

    notification_id: int
    outcome: str  # Outcome value, or "skipped" / "render_failed"
    requeue_in_s: float | None = None
    channel: str | None = None
    limit_key: str | None = None


class Delivery:
    def __init__(
        self,
        factory: sessionmaker[Session],
        channels: dict[str, Channel],
        settings: Settings,
        *,
        pause_channel: Callable[[str, float], None] | None = None,
        acquire: Callable[[str, str | None], float] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.factory = factory
        self.channels = channels
        self.settings = settings
        self.pause_channel = pause_channel or (lambda channel, seconds: None)
        self.acquire = acquire or (lambda channel, key: 0.0)
        self.clock = clock

    # ------------------------------------------------------------ steps

    def claim(self, notification_id: int) -> bool:
        now = self.clock()
        lease = now + timedelta(seconds=self.settings.processing_lease_s)
        with self.factory() as session, session.begin():
            claimed = session.execute(
                update(Notification)
                .where(
                    Notification.id == notification_id,
                    Notification.status == NotificationStatus.pending.value,
                    (Notification.send_at.is_(None)) | (Notification.send_at <= now),
                )
                .values(
                    status=NotificationStatus.processing.value,
                    attempts=Notification.attempts + 1,
                    locked_until=lease,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            ).rowcount
        return claimed == 1

    def defer(self, notification_id: int, wait_s: float) -> None:
        """Park a pending row until a channel quota frees up (the scheduler releases it)."""
        now = self.clock()
        with self.factory() as session, session.begin():
            session.execute(
                update(Notification)
                .where(Notification.id == notification_id, Notification.status == NotificationStatus.pending.value)
                .values(send_at=now + timedelta(seconds=wait_s), queued_at=None, updated_at=now,
                        last_error=f"waiting {int(wait_s)}s for the channel's quota")
                .execution_options(synchronize_session=False)
            )

    def deliver(self, notification_id: int) -> Result:
        if not self.claim(notification_id):
            return Result(notification_id, "skipped")
        now = self.clock()
        with self.factory() as session, session.begin():
            n = session.get(Notification, notification_id)
            assert n is not None
            client = session.get(Client, n.recipient_id) if n.recipient_id is not None else None
            channel = self.channels.get(n.channel)
            refusal = self._refusal_now(client, n, channel)
            if refusal is not None:
                # The client changed their mind after this was planned (a reminder, a queued broadcast):
                # their current choice wins.
                self._finish(n, NotificationStatus.canceled, error=f"not sent: {refusal}", now=now)
                log.info("canceled at send time", extra={"action": "delivery.canceled", "notification_id": n.id,
                                                         "reason": refusal})
                return Result(n.id, "canceled")
            try:
                if channel is None:
                    raise TemplateError(f"channel {n.channel!r} is not registered in this worker")
                template = find_template(
                    session, n.template_code, n.channel, n.locale, self.settings.default_locale
                )
                data = n.payload_json or {}
                step = step_of(n.event_type, n.step)
                buttons = buttons_for(step, data, n.locale) if n.channel == "telegram" else ()
                headers, more = marketing_extras(self.settings, n.category, n.channel, n.recipient_id, n.locale)
                message = compose(
                    template,
                    event_type=n.event_type,
                    data=data,
                    client=client,
                    notification_id=n.id,
                    buttons=buttons + more,
                    headers=headers,
                )
            except TemplateError as exc:
                self._finish(n, NotificationStatus.failed, error=f"render failed: {exc}", now=now)
                log.warning("render failed", extra={"action": "delivery.render_failed",
                                                    "notification_id": n.id, "reason": str(exc)})
                metrics.delivery(n.channel, "render_failed", "render failed")
                return Result(n.id, "render_failed")
            n.subject = message.subject
            n.body = message.html if message.html is not None else message.text
            attempt = DeliveryAttempt(notification_id=n.id, attempt_no=n.attempts, started_at=now)
            session.add(attempt)
            session.flush()
            attempt_id, address, channel_name = attempt.id, n.recipient_address, n.channel
            attachment_url = data.get(step.attachment_field) if step and step.attachment_field else None
            attachment_name = data.get("file_name")

        # The provider call, outside any transaction.
        try:
            # The channel's slot is taken here, right before the call, so the spacing the
            # provider sees is the limiter's (a 429 seen by another worker also stops us here).
            wait_s = self.acquire(channel_name, channel.limit_key(address))
            if wait_s > 0:
                raise DeliveryError.waiting(wait_s)
            if attachment_url:
                message = replace(message, attachment=fetch_attachment(attachment_url, attachment_name))
            external_id = channel.send(address, message)
            error: DeliveryError | None = None
        except DeliveryError as exc:
            external_id, error = None, exc
        faults.hit("worker.after_send")
        # The provider's answer is known now; losing it to a dropped database connection would turn a
        # message we know was sent into "delivery uncertain".  Recording is safe to repeat: it checks
        # the row is still ours.  The pool replaces dead connections (pool_pre_ping).
        for retry in range(RECORD_RETRIES + 1):
            try:
                return self._record(notification_id, attempt_id, channel_name, address, external_id, error)
            except DBAPIError as exc:
                if retry == RECORD_RETRIES or not (exc.connection_invalidated or isinstance(exc, OperationalError)):
                    raise
                log.warning("recording the outcome failed; retrying", extra={
                    "action": "delivery.record_retry", "notification_id": notification_id,
                    "error": type(exc.orig).__name__})
                time.sleep(0.5 * (retry + 1))  # backoff while the database comes back
        raise AssertionError("unreachable")

    @staticmethod
    def _refusal_now(client: Client | None, n: Notification, channel: Channel | None) -> str | None:
        if client is None or channel is None:
            return None  # an admin's test to themselves; an unknown channel fails below with its reason
        if not allows_category(client, Category(n.category)):
            return f"the client no longer accepts {n.category} notifications"
        return channel_refusal(client, n.channel, channel)

    # ------------------------------------------------------------ recording

    def _record(
        self,
        notification_id: int,
        attempt_id: int,
        channel_name: str,
        address: str,
        external_id: str | None,
        error: DeliveryError | None,
    ) -> Result:
        now = self.clock()
        outcome = Outcome.sent if error is None else error.outcome
        requeue_in_s: float | None = None
        with self.factory() as session, session.begin():
            n = session.get(Notification, notification_id)
            attempt = session.get(DeliveryAttempt, attempt_id)
            if error is not None and error.local:
                session.delete(attempt)  # the provider was never called: not an attempt
            attempt.finished_at = now
            attempt.outcome = outcome.value
            attempt.external_id = external_id
            attempt.error = error.reason if error else None
            if n.status != NotificationStatus.processing.value:
                # The lease ran out and the reaper took the row back meanwhile.
                log.warning("late result", extra={"action": "delivery.late", "notification_id": n.id})
                return Result(n.id, outcome.value)
            if error is None:
                n.external_id = external_id
                n.sent_at = now
                self._finish(n, NotificationStatus.sent, error=None, now=now)
            else:
                decision = decide(
                    outcome,
                    attempts=n.attempts,
                    max_attempts=self.settings.max_attempts,
                    base_delay_s=self.settings.retry_base_delay_s,
                    max_delay_s=self.settings.retry_max_delay_s,
                    retry_after_s=error.retry_after_s,
                )
                if outcome is Outcome.rate_limited and not error.local:
                    self.pause_channel(channel_name, decision.delay_s)  # the provider said so: every worker waits
                if decision.retry:
                    if not decision.counts_as_attempt:
                        n.attempts -= 1
                    n.status = NotificationStatus.pending.value
                    n.send_at = now + timedelta(seconds=decision.delay_s)
                    n.last_error = None if error.local else error.reason
                    n.locked_until = None
                    n.updated_at = now
                    if decision.delay_s <= MAX_BROKER_DELAY_S:
                        n.queued_at = now
                        requeue_in_s = decision.delay_s
                    else:
                        n.queued_at = None  # the scheduler releases it when due
                else:
                    n.delivery_uncertain = outcome is Outcome.uncertain
                    reason = error.reason
                    if outcome is Outcome.uncertain:
                        reason = f"delivery uncertain (not resent): {reason}"
                    elif outcome is Outcome.transient:
                        reason = f"gave up after {n.attempts} attempts: {reason}"
                    self._finish(n, NotificationStatus.failed, error=reason, now=now)
                    if error.address_unreachable:
                        self._mark_unreachable(session, n.recipient_id, channel_name, address, error.reason)
        if error is not None and error.local:
            metrics.limiter_wait(channel_name, error.retry_after_s or 0.0)
        else:
            metrics.delivery(channel_name, outcome.value, error.reason if error else None)
        log.info(
            "delivery attempt",
            extra={"action": f"delivery.{outcome.value}", "notification_id": notification_id,
                   "channel": channel_name, "reason": error.reason if error else None},
        )
        return Result(notification_id, outcome.value, requeue_in_s, channel_name,
                      self.channels[channel_name].limit_key(address) if channel_name in self.channels else None)

    @staticmethod
    def _finish(n: Notification, status: NotificationStatus, *, error: str | None, now: datetime) -> None:
        n.status = status.value
        n.last_error = error
        n.locked_until = None
        n.updated_at = now

    @staticmethod
    def _mark_unreachable(session: Session, client_id: int, channel: str, address: str, reason: str) -> None:
        """The one place a permanent provider error disables a client's address."""
        client = session.scalars(select(Client).where(Client.id == client_id)).first()
        if client is None or not hasattr(client, f"{channel}_unreachable_reason"):
            return
        # Only if the address is still the one that failed (the client may have changed it).
        current = {"telegram": client.telegram_chat_id, "email": client.email}.get(channel, address)
        if current == address:
            setattr(client, f"{channel}_unreachable_reason", reason[:500])
