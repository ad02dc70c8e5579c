"""Delivery in batches: claim N -> render -> slots -> attempt rows -> send over a pool -> record.

Every message Vestnik sends goes through :class:`Delivery`: notifications from
events and broadcasts (:meth:`Delivery.pump`, :meth:`Delivery.deliver`), and
the messages sent at once while someone waits, a client's sign-in message and
an admin's "send test to me" (:meth:`Delivery.send_now`).  Every status change
goes through ``workers/notifications.py``.

One batch, :meth:`Delivery.pump` (docs/operations.md, "Delivery in batches"):

1. **One transaction before any send**: claim up to N due pending rows of the
   channel (``FOR UPDATE SKIP LOCKED``), render each (a template error fails
   only that row; a client who said no since cancels it), ask the limiter for
   the whole batch in one round trip, give the rows without a slot back to
   pending (not an attempt), open the attempt rows of the first chunk (each
   with the exact text it sends, one statement); commit.  Rows of one event
   render once per distinct input (``compose``'s memo), not once per client.
2. **Sends** over the channel's pool of connections (``workers/senders.py``),
   each at its slot and never after its deadline.
3. **Record a chunk at a time**: one transaction closes the chunk's attempts,
   moves its rows (sent, retry later, failed, uncertain: ``workers/retry.py``)
   and opens the next chunk's attempts.  A crash leaves at most one chunk with
   open attempts ("delivery uncertain", never resent); the rest is still
   ``processing`` without an attempt and the reaper gives it back.
4. **Stops early, losing nothing**: a provider's 429 pauses the channel
   everywhere and the batch's unsent rows wait out ``retry_after``; a pause
   seen from another worker, a limiter that cannot be reached, or a batch that
   ran for a quarter of the processing lease give the unsent rows back, not
   counted as attempts.

The window of invariant 4 is between a send returning and its chunk's
record: a crash there leaves open attempts, which the reaper marks uncertain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from vestnik.shared import client_view, faults, timeline
from vestnik.shared.client_view import ClientView
from vestnik.shared.composer import Memo, compose, find_template
from vestnik.shared.config import Settings
from vestnik.shared.errors import TemplateError
from vestnik.shared.models import Category, Client, NotificationStatus, NotificationTemplate, utcnow
from vestnik.shared.unsubscribe import marketing_extras
from vestnik.workers import attachments, metrics, quiet_hours
from vestnik.workers import chats as chat_registry
from vestnik.workers import notifications as state
from vestnik.workers.channels.base import Channel, DeliveryError, Outcome, RenderedMessage
from vestnik.workers.limits import Grant, Limiter
from vestnik.workers.retry import decide
from vestnik.workers.rules import allows_category, buttons_for, channel_refusal, step_of
from vestnik.workers.senders import SenderPool, Sent, send_one

log = logging.getLogger("vestnik.delivery")

#: Longer waits than this are kept in the database (``send_at``) and released by
#: the scheduler; shorter ones ride on the broker's delay.  Dramatiq keeps a
#: delayed message unacked in worker memory, and RabbitMQ's consumer_timeout
#: (30 min) would requeue it (dramatiq #827).
MAX_BROKER_DELAY_S = 60.0
#: tries to record a provider's answer when the database connection drops (0.5 s, 1 s, 1.5 s apart)
RECORD_RETRIES = 3
#: slots are handed out this far ahead; rows whose slot lies further wait in the database
HORIZON_S = 2.0
#: a chunk (one record transaction) holds at most this many rows, whose slots lie within CHUNK_S; a
#: chunk whose slots all lie within GATE_AHEAD_S of its first holds up to VESTNIK_DELIVERY_CHUNK_ROWS
#: (``Delivery.chunk_rows``; see ``_slots``)
CHUNK_ROWS = 16
CHUNK_S = 0.2
#: rows of a chunk whose slots lie this close pass the limiter's gate together (one round trip)
GATE_AHEAD_S = 0.005
#: a row the gate still holds back this long after its slot goes back to pending (not an attempt)
GATE_WAIT_S = 1.0


@dataclass(frozen=True)
class Result:
    """What happened to one row; ``requeue_in_s`` when it waits for a short while (the broker brings it)."""

    notification_id: int
    outcome: str  # Outcome value, or "skipped" / "render_failed" / "canceled"
    requeue_in_s: float | None = None
    channel: str | None = None
    limit_key: str | None = None
    status: str | None = None  # the row's status afterwards
    error: str | None = None


@dataclass
class BatchResult:
    claimed: int = 0
    results: list[Result] | None = None
    #: the earliest moment (seconds from now) a row of this batch becomes due again, if within the broker's reach
    wake_in_s: float | None = None
    #: the same per channel (a batch of inline rows spans channels: each channel's pump is woken for its own)
    wakes: dict[str, float] = field(default_factory=dict)

    def wake(self, seconds: float, channel: str | None = None) -> None:
        if seconds <= MAX_BROKER_DELAY_S:
            self.wake_in_s = seconds if self.wake_in_s is None else min(self.wake_in_s, seconds)
            if channel is not None:
                self.wakes[channel] = min(self.wakes.get(channel, seconds), seconds)


@dataclass
class _Item:
    claimed: state.Claimed
    message: RenderedMessage
    key: str | None
    grant: Grant | None = None
    attempt_no: int = 0


class _NoLimits:
    """Every item may go now (no limiter configured: tests of other things)."""

    def reserve(self, channel: str, keys: Sequence[str | None], *, horizon_s: float) -> list[Grant]:
        return [Grant(time.monotonic(), None) for _ in keys]

    def begin(self, channel: str, sends: Sequence[tuple[str, str | None]]) -> list[float]:
        return [0.0 for _ in sends]

    def end(self, channel: str, sends: Sequence[tuple[str, str | None, str | None, float]]) -> None:
        return None

    def pause(self, channel: str, seconds: float) -> None:
        return None

    def paused_for(self, channel: str) -> float:
        return 0.0


class _AcquireShim(_NoLimits):
    """An ``acquire(channel, key) -> wait`` callable as a limiter: each item now, or its wait."""

    def __init__(self, acquire: Callable[[str, str | None], float],
                 pause: Callable[[str, float], None] | None) -> None:
        self._acquire = acquire
        self._pause = pause

    def reserve(self, channel: str, keys: Sequence[str | None], *, horizon_s: float) -> list[Grant]:
        grants = []
        for key in keys:
            wait = self._acquire(channel, key)
            grants.append(Grant(time.monotonic(), None) if wait <= 0 else Grant(None, None, wait))
        return grants

    def pause(self, channel: str, seconds: float) -> None:
        if self._pause is not None:
            self._pause(channel, seconds)


@dataclass(frozen=True)
class TemplateText:
    """What rendering reads of a template, kept past its session (a batch's cache holds these)."""

    id: int
    code: str
    channel: str
    locale: str
    subject: str | None
    body: str
    buttons: str | None

    @classmethod
    def of(cls, t: NotificationTemplate) -> TemplateText:
        return cls(t.id, t.code, t.channel, t.locale, t.subject, t.body, t.buttons)


_TEMPLATES_VERSION = text(state.TEMPLATES_VERSION)


class TemplateCache:
    """The templates a worker found, by (code, channel, locale), kept while no template row changed.

    Finding a template is an ORM query (about 1 ms of CPU); a batch asks for one or two.  Each batch
    reads the table's version first (:data:`~vestnik.workers.notifications.TEMPLATES_VERSION`, in its
    claim's statement on PostgreSQL: ``Claimed.templates_version``) and starts afresh when it moved, so
    an admin's edit is what the next batch renders: never the old text.  Not on SQLite (tests of other
    things): every batch finds its templates again."""

    def __init__(self) -> None:
        #: (version, what was found at that version), swapped as one (pumps share it from several threads)
        self._state: tuple[Any, dict[tuple[str, str, str], TemplateText | TemplateError]] = (None, {})

    def current(self, session: Session, version: str | None = None
                ) -> dict[tuple[str, str, str], TemplateText | TemplateError]:
        """The templates found at ``version`` (the claim read it), or at the version read now."""
        if version is None:
            if session.get_bind().dialect.name != "postgresql":
                return {}
            version = session.execute(_TEMPLATES_VERSION).scalar_one()
        state = self._state
        if state[0] != version:
            state = self._state = (version, {})  # a batch still rendering keeps the dict it had
        return state[1]


class _LazySession:
    """Stands for an ORM session on a batch's connection, in its transaction, made on first use.

    A batch's hot statements (claim, attempts, record) run on the Core connection; the rarer steps that
    want a session (a template not cached yet, an attachment, clients not handed over, the quiet-hours
    policies once a minute, a chat's mark) get one when they ask, so the common batch never pays for it."""

    def __init__(self, make: Callable[[], Session]) -> None:
        self._make = make
        self.made: Session | None = None

    def __getattr__(self, name: str) -> Any:
        if self.made is None:
            self.made = self._make()
        return getattr(self.made, name)


@dataclass
class _Tx:
    """One transaction of a batch: its Core connection and, for the steps that want one, a session on it."""

    conn: Connection
    session: Any  # a Session, or a _LazySession standing for one


class Delivery:
    def __init__(
        self,
        factory: sessionmaker[Session],
        channels: dict[str, Channel],
        settings: Settings,
        *,
        limiter: Limiter | None = None,
        pause_channel: Callable[[str, float], None] | None = None,
        acquire: Callable[[str, str | None], float] | None = None,
        clock: Callable[[], datetime] = utcnow,
        pool_sizes: dict[str, int] | None = None,
    ) -> None:
        self.factory = factory
        #: the engine of the batches' transactions (a Session's own transaction costs about 0.13 ms of CPU,
        #: two a batch: a tenth of a one-recipient batch); None: the factory's sessions, as they come
        bind = getattr(factory, "kw", {}).get("bind")
        self._engine: Engine | None = bind if isinstance(bind, Engine) else None
        self.channels = channels
        self.settings = settings
        if limiter is not None:
            self.limiter: Any = limiter
        elif acquire is not None:
            self.limiter = _AcquireShim(acquire, pause_channel)
        else:
            self.limiter = _NoLimits()
            if pause_channel is not None:
                self.limiter.pause = pause_channel  # type: ignore[method-assign]
        self.clock = clock
        self.quiet = quiet_hours.PolicyCache()
        self.templates = TemplateCache()
        sizes = pool_sizes or {name: type(ch).connections(settings) for name, ch in channels.items()}
        self.pools = {name: SenderPool(ch, sizes.get(name, 2)) for name, ch in channels.items()}
        self.batch_size = settings.delivery_batch_size
        self.chunk_rows = settings.delivery_chunk_rows
        #: a batch gives its unsent rows back after this long, well inside the processing lease
        self.budget_s = settings.processing_lease_s / 4

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()

    def _limit_key(self, channel: str, address: str) -> str | None:
        ch = self.channels.get(channel)
        return ch.limit_key(address) if ch is not None else None

    # ------------------------------------------------------------ the queue's path

    def pump(self, channel: str, *, limit: int | None = None,
             on_claimed: Callable[[bool], None] | None = None) -> BatchResult:
        """One batch of ``channel``'s due rows; ``on_claimed(full)`` runs right after the claim commits
        (a full batch: more are waiting, another pump may start while this one sends)."""
        n = max(1, min(limit or self.batch_size, self.batch_size))
        lease = self.settings.processing_lease_s
        return self._batch(lambda s, now: state.claim_due(s, channel, limit=n, now=now, lease_s=lease), n,
                           on_claimed)

    def deliver(self, notification_id: int) -> Result:
        """Send one notification that is pending and due (a batch of one); a duplicate does nothing."""
        batch = self.deliver_rows([notification_id])
        return batch.results[0] if batch.results else Result(notification_id, "skipped")

    def deliver_rows(self, ids: Sequence[int], *, clients: Mapping[int, Client | ClientView] | None = None
                     ) -> BatchResult:
        """A batch of these rows, those still pending and due: handling's hand-over of the rows it has just
        committed, without a pump's broker round trip (``workers/actors.py``).  The rows may be of several
        channels: one claim transaction and one record transaction per round for all of them (each
        channel keeps its own slots, chunks, pauses and give-backs).
        ``clients``: the recipients as handling has just read them (with their addresses), so the batch
        does not read them again; a client not among them is read as usual."""
        lease = self.settings.processing_lease_s
        ids = list(ids)
        return self._batch(lambda s, now: state.claim(s, ids, now=now, lease_s=lease), len(ids), None,
                           clients=clients)

    @contextmanager
    def _transaction(self) -> Iterator[_Tx]:
        """One transaction on a Core connection, committed when the block ends without an error; a session
        a step asks for joins it (and is flushed before the commit)."""
        if self._engine is None:
            with self.factory() as session, session.begin():
                yield _Tx(session.connection(), session)
            return
        with self._engine.begin() as conn:
            lazy = _LazySession(lambda: self.factory(bind=conn))
            try:
                yield _Tx(conn, lazy)
                if lazy.made is not None:
                    lazy.made.flush()
            finally:
                if lazy.made is not None:
                    lazy.made.close()

    def defer_channel(self, channel: str, wait_s: float) -> int:
        """Park the channel's due rows until its quota frees up (the scheduler releases them then)."""
        now = self.clock()
        with self.factory() as session, session.begin():
            return state.defer_due(session, channel, wait_s=wait_s, now=now)

    def defer(self, notification_id: int, wait_s: float) -> None:
        """Park one pending row until a channel quota frees up."""
        with self.factory() as session, session.begin():
            state.defer(session, [notification_id], wait_s=wait_s, now=self.clock())

    # ------------------------------------------------------------ one batch

    def _batch(self, claim: Callable[[state.Db, datetime], list[state.Claimed]], limit: int,
               on_claimed: Callable[[bool], None] | None, *, clients: Mapping[int, Client | ClientView] | None = None
               ) -> BatchResult:
        started = time.monotonic()
        out = BatchResult(results=[])
        with self._transaction() as tx:
            now = self.clock()
            claimed = claim(tx.conn, now)
            if not claimed:
                return out
            out.claimed = len(claimed)
            items = self._prepare(tx, claimed, now, out, clients=clients)
            by_channel = _by_channel(items)
            grants = self._reserve({lane[0].claimed.channel: [it.key for it in lane] for lane in by_channel})
            lanes = [self._slots(tx, lane, now, out, grants[lane[0].claimed.channel]) for lane in by_channel]
            lanes = [chunks for chunks in lanes if chunks]
            first = [it for chunks in lanes for it in chunks[0]]
            if first:
                self._open(tx, first, now)
        if timeline.ON:
            timeline.mark("pump.claimed", [c.id for c in claimed])
        if on_claimed is not None:
            on_claimed(len(claimed) >= limit)
        # Rounds: the i-th chunk of every channel's lane (one lane for a pump; an inline batch has one per
        # channel).  A round's chunks are sent together and recorded in one transaction, which opens the
        # next round's attempts: a crash leaves at most the round's chunks "delivery uncertain".
        i = 0
        while lanes:
            going: list[list[list[_Item]]] = []
            for chunks in lanes:
                stop = self._stop_reason(chunks[i][0].claimed.channel, started, first=i == 0)
                if stop is not None:
                    self._give_back([it for c in chunks[i:] for it in c], stop, out)
                else:
                    going.append(chunks)
            if not going:
                break
            chunk = [it for chunks in going for it in chunks[i]]
            sent = self._send_chunk(chunk)
            if timeline.ON:
                timeline.mark("pump.sent", [it.claimed.id for it in chunk])
            faults.hit("worker.after_send")
            following = [it for chunks in going if i + 1 < len(chunks) for it in chunks[i + 1]]
            limited = self._record(chunk, sent, following, out)
            if timeline.ON:
                timeline.mark("pump.recorded", [it.claimed.id for it in chunk])
            lanes = []
            for chunks in going:
                if i + 1 >= len(chunks):
                    continue
                if chunks[0][0].claimed.channel in limited:
                    self._give_back([it for c in chunks[i + 1:] for it in c],
                                    ("paused", limited[chunks[0][0].claimed.channel]), out)
                else:
                    lanes.append(chunks)
            i += 1
        return out

    @staticmethod
    def _send_id(item: _Item) -> str:
        """The send's name at the limiter's gate: the attempt's, as the limiter's seed reads it back."""
        return f"{item.claimed.id}:{item.attempt_no}"

    def _send_chunk(self, chunk: list[_Item]) -> list[Sent]:
        """Each row through the limiter's gate at its slot (rows due within GATE_AHEAD_S of each other
        in one round trip per channel), then to its channel's pool.  The sends' ends go back to the
        limiter in one round trip per channel when the chunk is done, and before waiting for a later slot
        those already answered (so each counts until its real end, and the plan's next slots follow it).
        A row the gate holds back past GATE_WAIT_S after its slot is not sent (``late``: it goes back to
        pending, not an attempt).  A chunk may hold rows of several channels (an inline batch's round)."""
        outcome: list[Future[Sent] | Sent | None] = [None] * len(chunk)
        waiting = []
        for i, item in enumerate(chunk):
            if item.claimed.channel in self.pools:
                waiting.append(i)
            else:
                outcome[i] = Sent(error=DeliveryError.permanent(
                    f"channel {item.claimed.channel!r} is not registered in this worker"))
        due = [it.grant.at if it.grant is not None and it.grant.at is not None else 0.0 for it in chunk]
        give_up = [at + GATE_WAIT_S for at in due]
        reported: set[int] = set()

        def by_channel(indexes: list[int]) -> dict[str, list[int]]:
            groups: dict[str, list[int]] = {}
            for i in indexes:
                groups.setdefault(chunk[i].claimed.channel, []).append(i)
            return groups

        def report(indexes: list[int]) -> None:
            ends: dict[str, list[tuple[str, str | None, str | None, float]]] = {}
            for i in indexes:
                sent = outcome[i]
                sent = sent.result() if isinstance(sent, Future) else sent
                if sent is not None and sent.done is not None:
                    item = chunk[i]
                    ends.setdefault(item.claimed.channel, []).append(
                        (self._send_id(item), item.key, item.grant.ref if item.grant else None, sent.done))
                reported.add(i)
            if ends:
                self._end(ends)

        while waiting:
            now = time.monotonic()
            first = min(due[i] for i in waiting)
            if first - GATE_AHEAD_S > now:
                report([i for i, o in enumerate(outcome) if isinstance(o, Future) and o.done() and i not in reported])
                time.sleep(max(0.0, first - GATE_AHEAD_S - time.monotonic()))
                continue
            ready = [i for i in waiting if due[i] - GATE_AHEAD_S <= now]
            waits: dict[int, float] = {}
            groups = by_channel(ready)
            answers = self._begin({channel: [(self._send_id(chunk[i]), chunk[i].key) for i in group]
                                   for channel, group in groups.items()})
            for channel, group in groups.items():
                waits.update(zip(group, answers[channel], strict=True))
            now = time.monotonic()
            for channel, group in by_channel([i for i in ready if waits[i] <= 0]).items():
                futures = self.pools[channel].submit_all([(chunk[i].claimed.address, chunk[i].message, due[i])
                                                          for i in group])
                for i, future in zip(group, futures, strict=True):
                    outcome[i] = future
            for i in ready:
                wait = waits[i]
                if wait <= 0:
                    pass
                elif now + wait > give_up[i]:
                    outcome[i] = Sent(late=True)
                else:
                    due[i] = now + wait
                    continue
                waiting.remove(i)
        report([i for i, o in enumerate(outcome) if isinstance(o, Future) and i not in reported])
        return [o.result() if isinstance(o, Future) else o for o in outcome]  # type: ignore[misc]

    def _stop_reason(self, channel: str, started: float, *, first: bool) -> tuple[str, float] | None:
        if time.monotonic() - started > self.budget_s:
            return "ran long", 0.0
        if not first:
            paused = self.limiter.paused_for(channel)  # another worker's 429, or the limiter is unreachable
            if paused > 0:
                return "paused", paused
        return None

    # ------------------------------------------------------------ render, slots

    def _prepare(self, tx: _Tx, claimed: list[state.Claimed], now: datetime, out: BatchResult,
                 *, clients: Mapping[int, Client | ClientView] | None = None) -> list[_Item]:
        session = tx.session
        known = clients or {}
        ids = {c.recipient_id for c in claimed if c.recipient_id is not None and c.recipient_id not in known}
        # The others as light read-only rows, one query (not ORM objects with selectin addresses).
        clients = {**known, **client_view.load(session, ids)} if ids else known
        templates = self.templates.current(session, claimed[0].templates_version)
        memo: Memo = {}  # one batch's renders: the clients of one event mostly get the same text
        items: list[_Item] = []
        canceled: list[tuple[int, str]] = []
        failed: list[tuple[int, str]] = []
        held: list[tuple[int, datetime]] = []
        # Posts to groups and channels (no client): the registered chat, if it is one (workers/chats.py).
        chats = chat_registry.by_address(session, {(c.channel, c.address) for c in claimed if c.recipient_id is None})
        for c in claimed:
            client = clients.get(c.recipient_id) if c.recipient_id is not None else None
            channel = self.channels.get(c.channel)
            chat = chats.get((c.channel, c.address)) if c.recipient_id is None else None
            refusal = self._refusal_now(client, c, channel)
            if chat is not None and chat.unreachable_reason:
                refusal = f"the chat is unreachable: {chat.unreachable_reason}"
            if refusal is not None:
                # The client changed their mind after this was planned: their current choice wins.
                canceled.append((c.id, f"not sent: {refusal}"))
                out.results.append(Result(c.id, "canceled", channel=c.channel,
                                          status=NotificationStatus.canceled.value))
                continue
            until = self._quiet_until(session, client, c, now)
            if until is not None:  # became due late (a retry, a quota wait) inside the client's quiet hours
                held.append((c.id, until))
                out.results.append(Result(c.id, "held", channel=c.channel, status=NotificationStatus.pending.value))
                continue
            try:
                message = self._render(session, c, client or self._stand_in(c, chat), channel, templates, memo)
            except TemplateError as exc:
                failed.append((c.id, f"render failed: {exc}"))
                metrics.delivery(c.channel, "render_failed", "render failed")
                out.results.append(Result(c.id, "render_failed", channel=c.channel,
                                          status=NotificationStatus.failed.value, error=str(exc)))
                continue
            items.append(_Item(c, message, self._limit_key(c.channel, c.address)))
        for row_id, until in held:
            state.release(tx.conn, [row_id], now=now, send_at=until,
                          reason=f"{quiet_hours.REASON}: waits until {until:%Y-%m-%d %H:%M} UTC")
        for row_id, reason in canceled:
            state.finish(tx.conn, [row_id], NotificationStatus.canceled, reason, now=now)
        for row_id, reason in failed:
            state.finish(tx.conn, [row_id], NotificationStatus.failed, reason, now=now)
        if canceled or failed:
            log.info("not sent", extra={"action": "delivery.not_sent", "canceled": len(canceled),
                                        "render_failed": len(failed)})
        return self._attachments(tx, items, now, out)

    def _stand_in(self, c: state.Claimed, chat: Any) -> ClientView:
        """Who a post is rendered for when no client is behind it (a group or channel): ``name`` is the
        chat's title, the zone the default one."""
        return ClientView(id=0, name=chat.title if chat is not None else "", locale=c.locale,
                          timezone=self.settings.default_timezone)

    def _render(self, session: Session, c: state.Claimed, client: ClientView | None, channel: Channel | None,
                templates: dict[tuple[str, str, str], Any], memo: Memo | None = None) -> RenderedMessage:
        if channel is None:
            raise TemplateError(f"channel {c.channel!r} is not registered in this worker")
        key = (c.template_code, c.channel, c.locale)
        template = templates.get(key)
        if template is None:
            try:
                template = TemplateText.of(find_template(session, c.template_code, c.channel, c.locale,
                                                         self.settings.default_locale, self.settings.fallback))
            except TemplateError as exc:
                template = exc
            templates[key] = template
        if isinstance(template, TemplateError):
            raise template
        data = c.payload or {}
        step = step_of(c.event_type, c.step)
        buttons = buttons_for(step, data, c.locale) if channel.supports_buttons else ()
        headers, more = marketing_extras(self.settings, c.category, channel, c.recipient_id, c.locale)
        return compose(template, form=channel, event_type=c.event_type, data=data, client=client,
                       notification_id=c.id, buttons=buttons + more, headers=headers,
                       default_zone=self.settings.default_timezone, memo=memo)

    def _attachments(self, tx: _Tx, items: list[_Item], now: datetime, out: BatchResult) -> list[_Item]:
        """Get the files some rows carry (a report, an invoice, a broadcast's upload) and record what each
        carries for the history; a file that cannot be had is that row's attempt."""
        ready = []
        stored: dict[str, Any] = {}  # a broadcast's batch reads its uploaded file once
        carried: list[tuple[int, dict[str, Any]]] = []
        for item in items:
            c = item.claimed
            step = step_of(c.event_type, c.step)
            ref = attachments.reference_of(c.payload, step.attachment_field if step else None)
            channel = self.channels.get(c.channel)
            if not ref or channel is None or not channel.supports_attachments:  # a webhook: the message alone
                ready.append(item)
                continue
            try:
                attachment, about = attachments.resolve(tx.session, ref, channel, (c.payload or {}).get("file_name"),
                                                        stored)
                item.message = replace(item.message, attachment=attachment)
                carried.append((c.id, about))
                ready.append(item)
            except DeliveryError as exc:
                attempt_no = dict(state.open_attempts(tx.conn, [c.id], now=now)).get(c.id, c.attempts + 1)
                item.attempt_no = attempt_no
                self._settle(tx, [(item, Sent(error=exc))], now, out)
        if carried:
            state.record_attachments(tx.session, carried)
        return ready

    def _quiet_until(self, session: Session, client: ClientView | None, c: state.Claimed, now: datetime
                     ) -> datetime | None:
        if client is None:
            return None
        return quiet_hours.hold_until(now, category=c.category, event_type=c.event_type,
                                      zone=quiet_hours.zone_of(client.timezone, self.settings.default_timezone),
                                      own=quiet_hours.own_window(client.quiet_hours_start_min,
                                                                 client.quiet_hours_end_min),
                                      policies=self.quiet.get(session))

    @staticmethod
    def _refusal_now(client: ClientView | None, c: state.Claimed, channel: Channel | None) -> str | None:
        if client is None or channel is None:
            return None  # an admin's test to themselves; an unknown channel fails at render with its reason
        if not allows_category(client, Category(c.category)):
            return f"the client no longer accepts {c.category} notifications"
        return channel_refusal(client, c.channel, channel)

    def _reserve(self, keys: dict[str, list[str | None]]) -> dict[str, list[Grant]]:
        """The limiter's grants for every channel's rows of the batch, in one round trip."""
        many = getattr(self.limiter, "reserve_many", None)
        if many is not None:
            return many(keys, horizon_s=HORIZON_S)
        return {channel: self.limiter.reserve(channel, k, horizon_s=HORIZON_S) for channel, k in keys.items()}

    def _begin(self, sends: dict[str, list[tuple[str, str | None]]]) -> dict[str, list[float]]:
        many = getattr(self.limiter, "begin_many", None)
        if many is not None:
            return many(sends)
        return {channel: self.limiter.begin(channel, s) for channel, s in sends.items()}

    def _end(self, ends: dict[str, list[tuple[str, str | None, str | None, float]]]) -> None:
        many = getattr(self.limiter, "end_many", None)
        if many is not None:
            many(ends)
            return
        for channel, e in ends.items():
            self.limiter.end(channel, e)

    def _slots(self, tx: _Tx, items: list[_Item], now: datetime, out: BatchResult,
               grants: list[Grant] | None = None) -> list[list[_Item]]:
        """One channel's rows with their grants (the limiter's answer for the whole batch, one round
        trip, asked here unless given); rows without a slot go back; chunks."""
        if not items:
            return []
        channel = items[0].claimed.channel
        if grants is None:
            grants = self.limiter.reserve(channel, [it.key for it in items], horizon_s=HORIZON_S)
        waiting: list[tuple[int, datetime]] = []
        go: list[_Item] = []
        for item, grant in zip(items, grants, strict=True):
            if grant.granted:
                item.grant = grant
                go.append(item)
                continue
            waiting.append((item.claimed.id, now + timedelta(seconds=grant.wait_s)))
            out.wake(grant.wait_s, channel)
            metrics.limiter_wait(channel, grant.wait_s)
            out.results.append(Result(item.claimed.id, Outcome.rate_limited.value,
                                      grant.wait_s if grant.wait_s <= MAX_BROKER_DELAY_S else None, channel,
                                      item.key, NotificationStatus.pending.value))
        state.release_each(tx.conn, waiting, now=now)
        go.sort(key=lambda it: it.grant.at)  # type: ignore[union-attr]
        # A chunk holds up to CHUNK_ROWS rows whose slots lie within CHUNK_S.  Rows whose slots all lie
        # within GATE_AHEAD_S of the chunk's first (limits far above the batch's pace) pass the gate
        # together and go to the pool at one instant anyway: such a chunk holds up to ``chunk_rows``
        # (a default batch), so the batch costs one record transaction, one gate round trip and one
        # report of ends instead of one per 16 rows.  The promise is the same per chunk: a kill -9
        # during its sends leaves at most that chunk "delivery uncertain" (up to ``chunk_rows`` rows).
        spread = min(CHUNK_ROWS, self.chunk_rows)
        chunks: list[list[_Item]] = []
        for item in go:
            if chunks:
                size, after = len(chunks[-1]), item.grant.at - chunks[-1][0].grant.at  # type: ignore[union-attr, operator]
                if (size < spread and after <= CHUNK_S) or (size < self.chunk_rows and after <= GATE_AHEAD_S):
                    chunks[-1].append(item)
                    continue
            chunks.append([item])
        return chunks

    def _open(self, tx: _Tx, chunk: list[_Item], now: datetime, *, keep_text: bool = True) -> None:
        """Open the chunk's attempts, keeping the exact text each row sends (what the client gets),
        unless ``keep_text`` is false: the row already holds what the history may show."""
        rendered = {it.claimed.id: (it.message.subject, it.message.html if it.message.html is not None
                                    else it.message.text, it.message.locale) for it in chunk} if keep_text else None
        numbers = dict(state.open_attempts(tx.conn, [it.claimed.id for it in chunk], now=now, rendered=rendered))
        for item in chunk:
            item.attempt_no = numbers.get(item.claimed.id, item.claimed.attempts + 1)

    # ------------------------------------------------------------ recording

    def _record(self, chunk: list[_Item], sent: list[Sent], following: list[_Item], out: BatchResult
                ) -> dict[str, float]:
        """Record a chunk (of one or more channels) and open the next one's attempts, in one transaction
        (retried if the database drops the connection: the answers are known and must not turn into
        "uncertain").  Returns per channel the ``retry_after`` of a 429 in this chunk, if any: that
        channel's following rows are not opened (they go back), the other channels' are."""
        limited: dict[str, float] = {}
        for item, s in zip(chunk, sent, strict=True):
            if s.error is not None and s.error.outcome is Outcome.rate_limited:
                channel = item.claimed.channel
                limited[channel] = max(limited.get(channel, 0.0), s.error.retry_after_s or 1.0)
        for channel, seconds in limited.items():
            self.limiter.pause(channel, seconds)  # the provider said so: every worker waits
        opening = [it for it in following if it.claimed.channel not in limited]

        def record(tx: _Tx, now: datetime) -> None:
            self._settle(tx, list(zip(chunk, sent, strict=True)), now, out)
            if opening:
                self._open(tx, opening, now)

        self._write(record, len(chunk))
        return limited

    def _write(self, work: Callable[[_Tx, datetime], None], rows: int) -> None:
        """Run ``work`` in one transaction, again if the database dropped the connection: between
        the claim and the last record every write must land, or rows whose attempts are open but
        were never sent would later read as "delivery uncertain"."""
        for retry in range(RECORD_RETRIES + 1):
            try:
                with self._transaction() as tx:
                    work(tx, self.clock())
                return
            except DBAPIError as exc:
                if retry == RECORD_RETRIES or not (exc.connection_invalidated or isinstance(exc, OperationalError)):
                    raise
                log.warning("writing a batch's state failed; retrying", extra={
                    "action": "delivery.record_retry", "rows": rows, "error": type(exc.orig).__name__})
                time.sleep(0.5 * (retry + 1))  # backoff while the database comes back

    def _settle(self, tx: _Tx, pairs: list[tuple[_Item, Sent]], now: datetime, out: BatchResult,
                *, retries: bool = True) -> None:
        settled: list[state.Settled] = []
        late: list[int] = []
        by_late: dict[int, str] = {}
        for item, s in pairs:
            c = item.claimed
            if s.late:
                late.append(c.id)
                by_late[c.id] = c.channel
                continue
            settled.append(settle(c.id, item.attempt_no, item.attempt_no, s.external_id, s.error, self.settings,
                                  now=now, retries=retries))
        ours = state.record(tx.conn, settled, now=now)
        if late:
            state.release(tx.conn, late, now=now, reason=None)  # the slot passed unused: not an attempt
            for row_id in late:
                out.wake(0.0, by_late[row_id])
        by_id = {item.claimed.id: (item, s) for item, s in pairs}
        for st in settled:
            item, s = by_id[st.id]
            c = item.claimed
            if st.id in ours and s.error is not None and s.error.address_unreachable:
                state.mark_unreachable(tx.session, c.recipient_id, c.channel, c.address, s.error.reason)
            if st.id not in ours:
                log.warning("late result", extra={"action": "delivery.late", "notification_id": c.id})
            metrics.delivery(c.channel, st.outcome, s.error.reason if s.error else None)
            # One line per attempt, so an operator can follow one notification through the logs.
            fields = {"action": "delivery.outcome", "notification_id": c.id, "channel": c.channel,
                      "outcome": st.outcome, "status": st.status, "attempt": item.attempt_no}
            if s.error is not None:
                fields["reason"] = s.error.reason
            log.info("delivery outcome", extra=fields)
            requeue = None
            if st.status == NotificationStatus.pending.value and st.send_at is not None:
                requeue = max(0.0, (st.send_at - now).total_seconds())
                out.wake(requeue, c.channel)
                requeue = requeue if st.queued else None
            out.results.append(Result(c.id, st.outcome, requeue, c.channel, item.key, st.status, st.last_error))
        for row_id in late:
            item, _ = by_id[row_id]
            out.results.append(Result(row_id, Outcome.rate_limited.value, 0.0, item.claimed.channel, item.key,
                                      NotificationStatus.pending.value))
        log.info("delivery chunk", extra={"action": "delivery.chunk", "rows": len(pairs), "late": len(late),
                                          "sent": sum(1 for s in settled if s.status == "sent")})

    def _give_back(self, items: list[_Item], why: tuple[str, float], out: BatchResult) -> None:
        """Unsent rows go back to pending, no attempt counted (their open attempts, if any, are removed)."""
        reason, wait_s = why
        self._write(lambda tx, now: state.release(tx.conn, [it.claimed.id for it in items], now=now,
                                                  send_at=now + timedelta(seconds=wait_s)), len(items))
        for it in items:
            out.wake(wait_s, it.claimed.channel)
            out.results.append(Result(it.claimed.id, Outcome.rate_limited.value, wait_s, it.claimed.channel, it.key,
                                      NotificationStatus.pending.value))
        log.info("batch gave rows back", extra={"action": "delivery.gave_back", "rows": len(items),
                                                "reason": reason, "wait_s": round(wait_s, 3)})

    # ------------------------------------------------------------ the waiting caller's path

    def send_now(self, row: dict[str, Any], message: RenderedMessage, *, max_wait_s: float) -> Result:
        """Record ``row`` (born ``processing``) and send ``message`` at once: a sign-in message, an
        admin's test.  The same limiter, attempt row and recording as every other send; no retry
        later (the caller is waiting, and a sign-in secret is never stored to be sent again).
        Waits up to ``max_wait_s`` for a slot of the channel's limits, else fails the row."""
        now = self.clock()
        with self.factory() as session, session.begin():
            notification_id = state.add_claimed(session, row, now=now, lease_s=self.settings.processing_lease_s)
        c = state.Claimed(notification_id, row["channel"], row.get("recipient_id"), row["recipient_address"],
                          row.get("event_type", ""), row.get("template_code", ""), row.get("payload_json") or {},
                          row.get("category", Category.service.value), row.get("locale", "ru"),
                          row.get("step", ""), 0)
        item = _Item(c, replace(message, notification_id=notification_id), self._limit_key(c.channel, c.address))
        out = BatchResult(results=[])
        deadline = time.monotonic() + max_wait_s
        item.attempt_no = 1  # born processing without an attempt: this is its first
        grant: Grant | None = None
        while True:
            if grant is None:  # a slot of the plan first, then the gate at the moment of sending
                grant = self.limiter.reserve(c.channel, [item.key],
                                             horizon_s=max(0.0, deadline - time.monotonic()))[0]
                wait_s = 0.0 if grant.granted else grant.wait_s
                if grant.granted:
                    item.grant = grant
                    time.sleep(max(0.0, (grant.at or 0.0) - time.monotonic()))
                else:
                    grant = None
            if grant is not None:
                wait_s = self.limiter.begin(c.channel, [(self._send_id(item), item.key)])[0]
                if wait_s <= 0:
                    break
            if time.monotonic() + wait_s > deadline:
                error = DeliveryError.transient(f"no {c.channel} slot within {max_wait_s:.0f}s "
                                                "(channel limits reached); not sent")
                with self.factory() as session, session.begin():
                    state.finish(session, [c.id], NotificationStatus.failed, error.reason, now=self.clock())
                return Result(c.id, Outcome.transient.value, channel=c.channel,
                              status=NotificationStatus.failed.value, error=error.reason)
            time.sleep(wait_s)  # the caller is a background thread or a waiting admin
        with self._transaction() as tx:
            # The caller wrote the row's text: a sign-in message's secret is masked there and must
            # never be replaced by the text that carries it.
            self._open(tx, [item], self.clock(), keep_text=False)
        channel = self.channels.get(c.channel)
        sent = (send_one(channel, c.address, item.message) if channel is not None
                else Sent(error=DeliveryError.permanent(f"channel {c.channel!r} is not configured")))
        if sent.done is not None:
            self.limiter.end(c.channel, [(self._send_id(item), item.key, grant.ref, sent.done)])
        if sent.error is not None and sent.error.outcome is Outcome.rate_limited:
            self.limiter.pause(c.channel, sent.error.retry_after_s or 1.0)
        with self._transaction() as tx:
            self._settle(tx, [(item, sent)], self.clock(), out, retries=False)
        return out.results[-1]


def _by_channel(items: list[_Item]) -> list[list[_Item]]:
    """The items of each channel, in their order (a pump's batch is one channel's)."""
    lanes: dict[str, list[_Item]] = {}
    for item in items:
        lanes.setdefault(item.claimed.channel, []).append(item)
    return list(lanes.values())


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
