"""Delivery: claim -> render -> limiter slot -> attempt row -> send -> record.

Every message Vestnik sends goes through :class:`Delivery`: notifications from
events and broadcasts (:meth:`Delivery.deliver`), and the messages sent at once
while someone waits, a client's sign-in message and an admin's "send test to
me" (:meth:`Delivery.send_now`).  Every status change goes through
``workers/notifications.py``.

- **Claim** takes a row that is pending and due (a duplicate finds nothing).
- **Render** happens just before the send; the exact subject and text are
  stored on the row.  A template error fails only this notification.
- **Slot**: the channel's limiter is asked right before the provider call; no
  slot means the row goes back to pending without counting an attempt.
- **Attempt row** is written and committed before the provider is called, and
  closed after it.
- **Record** applies the retry decision (``workers/retry.py``) in one place:
  sent, retry later, failed, or failed with ``delivery_uncertain`` when the
  provider may have accepted it.

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
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from vestnik.shared import faults
from vestnik.shared.composer import compose, find_template
from vestnik.shared.config import Settings
from vestnik.shared.errors import TemplateError
from vestnik.shared.models import Category, Client, NotificationStatus, utcnow
from vestnik.shared.unsubscribe import marketing_extras
from vestnik.workers import metrics, quiet_hours
from vestnik.workers import notifications as state
from vestnik.workers.attachments import fetch_attachment
from vestnik.workers.channels.base import Channel, DeliveryError, Outcome, RenderedMessage
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
    outcome: str  # Outcome value, or "skipped" / "render_failed" / "canceled"
    requeue_in_s: float | None = None
    channel: str | None = None
    limit_key: str | None = None
    status: str | None = None  # the row's status afterwards
    error: str | None = None


@dataclass(frozen=True)
class _Prepared:
    claimed: state.Claimed
    message: RenderedMessage
    attachment_url: str | None
    attachment_name: str | None


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
        self.quiet = quiet_hours.PolicyCache()

    def _limit_key(self, channel: str, address: str) -> str | None:
        ch = self.channels.get(channel)
        return ch.limit_key(address) if ch is not None else None

    # ------------------------------------------------------------ the queue's path

    def defer(self, notification_id: int, wait_s: float) -> None:
        """Park a pending row until a channel quota frees up (the scheduler releases it)."""
        with self.factory() as session, session.begin():
            state.defer(session, [notification_id], wait_s=wait_s, now=self.clock())

    def deliver(self, notification_id: int) -> Result:
        """Send one notification that is pending and due; a duplicate does nothing."""
        prepared = self._claim_and_render(notification_id)
        if isinstance(prepared, Result):
            return prepared
        c = prepared.claimed
        message = prepared.message
        attempt_no = self._open_attempt(c.id)  # committed before the provider is called
        if prepared.attachment_url:
            try:
                message = replace(message, attachment=fetch_attachment(prepared.attachment_url,
                                                                       prepared.attachment_name))
            except DeliveryError as exc:
                return self._record(c, attempt_no, None, exc, retries=True)
        # The channel's slot is taken here, right before the call, so the spacing the provider sees is
        # the limiter's (and a pause set by another worker's 429 stops this send too).
        wait_s = self.acquire(c.channel, self._limit_key(c.channel, c.address))
        if wait_s > 0:
            # No slot: the row goes back, not an attempt; the broker brings it again after the wait.
            now = self.clock()
            with self.factory() as session, session.begin():
                state.release(session, [c.id], now=now, send_at=now + timedelta(seconds=wait_s))
                if wait_s <= MAX_BROKER_DELAY_S:
                    state.mark_queued(session, [c.id], now)
            metrics.limiter_wait(c.channel, wait_s)
            requeue = wait_s if wait_s <= MAX_BROKER_DELAY_S else None
            return Result(c.id, Outcome.rate_limited.value, requeue, c.channel,
                          self._limit_key(c.channel, c.address), NotificationStatus.pending.value)
        return self._send(c, attempt_no, message, retries=True)

    def _claim_and_render(self, notification_id: int) -> _Prepared | Result:
        now = self.clock()
        with self.factory() as session, session.begin():
            claimed = state.claim(session, [notification_id], now=now, lease_s=self.settings.processing_lease_s)
            if not claimed:
                return Result(notification_id, "skipped")
            c = claimed[0]
            client = session.get(Client, c.recipient_id) if c.recipient_id is not None else None
            channel = self.channels.get(c.channel)
            refusal = self._refusal_now(client, c, channel)
            if refusal is not None:
                # The client changed their mind after this was planned (a reminder, a queued broadcast):
                # their current choice wins.
                state.finish(session, [c.id], NotificationStatus.canceled, f"not sent: {refusal}", now=now)
                log.info("canceled at send time", extra={"action": "delivery.canceled", "notification_id": c.id,
                                                         "reason": refusal})
                return Result(c.id, "canceled", status=NotificationStatus.canceled.value)
            until = self._quiet_until(session, client, c, now)
            if until is not None:  # became due late (a retry, a quota wait) inside the client's quiet hours
                state.release(session, [c.id], now=now, send_at=until,
                              reason=f"{quiet_hours.REASON}: waits until {until:%Y-%m-%d %H:%M} UTC")
                return Result(c.id, "held", status=NotificationStatus.pending.value)
            try:
                message, step = self._render(session, c, client, channel)
            except TemplateError as exc:
                state.finish(session, [c.id], NotificationStatus.failed, f"render failed: {exc}", now=now)
                log.warning("render failed", extra={"action": "delivery.render_failed",
                                                    "notification_id": c.id, "reason": str(exc)})
                metrics.delivery(c.channel, "render_failed", "render failed")
                return Result(c.id, "render_failed", status=NotificationStatus.failed.value, error=str(exc))
            state.store_rendered(session, [(c.id, message.subject,
                                            message.html if message.html is not None else message.text)])
        data = c.payload or {}
        attachment_url = data.get(step.attachment_field) if step and step.attachment_field else None
        return _Prepared(c, message, attachment_url, data.get("file_name"))

    def _render(self, session: Session, c: state.Claimed, client: Client | None, channel: Channel | None
                ) -> tuple[RenderedMessage, Any]:
        if channel is None:
            raise TemplateError(f"channel {c.channel!r} is not registered in this worker")
        template = find_template(session, c.template_code, c.channel, c.locale, self.settings.default_locale)
        data = c.payload or {}
        step = step_of(c.event_type, c.step)
        buttons = buttons_for(step, data, c.locale) if c.channel == "telegram" else ()
        headers, more = marketing_extras(self.settings, c.category, c.channel, c.recipient_id, c.locale)
        message = compose(template, event_type=c.event_type, data=data, client=client, notification_id=c.id,
                          buttons=buttons + more, headers=headers)
        return message, step

    def _quiet_until(self, session: Session, client: Client | None, c: state.Claimed, now: datetime
                     ) -> datetime | None:
        if client is None:
            return None
        return quiet_hours.hold_until(now, category=c.category, event_type=c.event_type,
                                      zone=quiet_hours.zone_of(client.timezone, self.settings.default_timezone),
                                      own=quiet_hours.own_window(client.quiet_hours_start_min,
                                                                 client.quiet_hours_end_min),
                                      policies=self.quiet.get(session))

    @staticmethod
    def _refusal_now(client: Client | None, c: state.Claimed, channel: Channel | None) -> str | None:
        if client is None or channel is None:
            return None  # an admin's test to themselves; an unknown channel fails below with its reason
        if not allows_category(client, Category(c.category)):
            return f"the client no longer accepts {c.category} notifications"
        return channel_refusal(client, c.channel, channel)

    # ------------------------------------------------------------ the waiting caller's path

    def send_now(self, row: dict[str, Any], message: RenderedMessage, *, max_wait_s: float) -> Result:
        """Record ``row`` (born ``processing``) and send ``message`` at once: a sign-in message, an
        admin's test.  The same limiter, attempt row and recording as every other send; no retry
        later (the caller is waiting, and a sign-in secret is never stored to be sent again).
        Waits up to ``max_wait_s`` for a limiter slot, else fails the row with the reason."""
        now = self.clock()
        with self.factory() as session, session.begin():
            notification_id = state.add_claimed(session, row, now=now, lease_s=self.settings.processing_lease_s)
        c = state.Claimed(notification_id, row["channel"], row.get("recipient_id"), row["recipient_address"],
                          row.get("event_type", ""), row.get("template_code", ""), row.get("payload_json") or {},
                          row.get("category", Category.service.value), row.get("locale", "ru"),
                          row.get("step", ""), 0)
        message = replace(message, notification_id=notification_id)
        deadline = time.monotonic() + max_wait_s
        while True:
            wait_s = self.acquire(c.channel, self._limit_key(c.channel, c.address))
            if wait_s <= 0:
                return self._send(c, self._open_attempt(c.id), message, retries=False)
            if time.monotonic() + wait_s > deadline:
                error = DeliveryError.transient(f"no {c.channel} slot within {max_wait_s:.0f}s "
                                                "(channel limits reached); not sent")
                with self.factory() as session, session.begin():
                    state.finish(session, [c.id], NotificationStatus.failed, error.reason, now=self.clock())
                return Result(c.id, Outcome.transient.value, channel=c.channel,
                              status=NotificationStatus.failed.value, error=error.reason)
            time.sleep(wait_s)  # the caller is a background thread or a waiting admin

    # ------------------------------------------------------------ one provider call

    def _open_attempt(self, notification_id: int) -> int:
        with self.factory() as session, session.begin():
            pairs = state.open_attempts(session, [notification_id], now=self.clock())
        return pairs[0][1] if pairs else 0

    def _send(self, c: state.Claimed, attempt_no: int, message: RenderedMessage, *, retries: bool) -> Result:
        channel = self.channels.get(c.channel)
        try:
            if channel is None:
                raise DeliveryError.permanent(f"channel {c.channel!r} is not registered in this worker")
            external_id: str | None = channel.send(c.address, message)
            error: DeliveryError | None = None
        except DeliveryError as exc:
            external_id, error = None, exc
        except Exception as exc:  # noqa: BLE001 - a bug mid-call: the provider may have the message
            log.exception("channel raised", extra={"action": "delivery.bug", "notification_id": c.id})
            external_id, error = None, DeliveryError.uncertain(f"unexpected error: {type(exc).__name__}")
        faults.hit("worker.after_send")
        return self._record(c, attempt_no, external_id, error, retries=retries)

    def _record(self, c: state.Claimed, attempt_no: int, external_id: str | None, error: DeliveryError | None,
                *, retries: bool) -> Result:
        # The provider's answer is known now; losing it to a dropped database connection would turn a
        # message we know was sent into "delivery uncertain".  Recording is safe to repeat: it checks
        # the row is still ours.  The pool replaces dead connections (pool_pre_ping).
        for retry in range(RECORD_RETRIES + 1):
            try:
                return self._record_once(c, attempt_no, external_id, error, retries=retries)
            except DBAPIError as exc:
                if retry == RECORD_RETRIES or not (exc.connection_invalidated or isinstance(exc, OperationalError)):
                    raise
                log.warning("recording the outcome failed; retrying", extra={
                    "action": "delivery.record_retry", "notification_id": c.id,
                    "error": type(exc.orig).__name__})
                time.sleep(0.5 * (retry + 1))  # backoff while the database comes back
        raise AssertionError("unreachable")

    def _record_once(self, c: state.Claimed, attempt_no: int, external_id: str | None,
                     error: DeliveryError | None, *, retries: bool) -> Result:
        now = self.clock()
        settled = settle(c.id, attempt_no, c.attempts + 1, external_id, error, self.settings, now=now,
                         retries=retries)
        if error is not None and error.outcome is Outcome.rate_limited:
            self.pause_channel(c.channel, error.retry_after_s or 1.0)  # the provider said so: every worker waits
        with self.factory() as session, session.begin():
            ours = state.record(session, [settled], now=now)
            if c.id in ours and error is not None and error.address_unreachable:
                state.mark_unreachable(session, c.recipient_id, c.channel, c.address, error.reason)
        if c.id not in ours:
            log.warning("late result", extra={"action": "delivery.late", "notification_id": c.id})
        metrics.delivery(c.channel, settled.outcome, error.reason if error else None)
        log.info("delivery attempt", extra={"action": f"delivery.{settled.outcome}", "notification_id": c.id,
                                            "channel": c.channel, "reason": error.reason if error else None})
        requeue = None
        if settled.status == NotificationStatus.pending.value and settled.queued and settled.send_at is not None:
            requeue = max(0.0, (settled.send_at - now).total_seconds())
        return Result(c.id, settled.outcome, requeue, c.channel, self._limit_key(c.channel, c.address),
                      settled.status, settled.last_error)


def settle(notification_id: int, attempt_no: int, attempts: int, external_id: str | None,
           error: DeliveryError | None, settings: Settings, *, now: datetime, retries: bool = True
           ) -> state.Settled:
    """What one provider answer means for its row: the retry policy applied (a pure function)."""
    if error is None:
        return state.Settled(notification_id, attempt_no, Outcome.sent.value, NotificationStatus.sent.value,
                             external_id=external_id)
    outcome = error.outcome
    if retries:
        decision = decide(outcome, attempts=attempts, max_attempts=settings.max_attempts,
                          base_delay_s=settings.retry_base_delay_s, max_delay_s=settings.retry_max_delay_s,
                          retry_after_s=error.retry_after_s)
        if decision.retry:
            return state.Settled(notification_id, attempt_no, outcome.value, NotificationStatus.pending.value,
                                 error=error.reason, last_error=error.reason,
                                 send_at=now + timedelta(seconds=decision.delay_s),
                                 counts=decision.counts_as_attempt,
                                 queued=decision.delay_s <= MAX_BROKER_DELAY_S)
    reason = error.reason
    if outcome is Outcome.uncertain:
        reason = f"delivery uncertain (not resent): {reason}"
    elif outcome is Outcome.transient and retries:
        reason = f"gave up after {attempts} attempts: {reason}"
    return state.Settled(notification_id, attempt_no, outcome.value, NotificationStatus.failed.value,
                         error=error.reason, last_error=reason, uncertain=outcome is Outcome.uncertain)
