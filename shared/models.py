"""The data model (SQLAlchemy 2.0), one schema for PostgreSQL and SQLite.

Names follow the user's specification (``notifications``,
``notification_templates``, the client preference columns).  Status columns
are plain strings backed by ``str`` enums so that a new channel or status
needs no database enum migration.
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, attribute_keyed_dict, mapped_column, relationship

from vestnik.shared.addresses import ADDRESS_FIELDS

# BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
BigId = BigInteger().with_variant(Integer, "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """``value`` itself; ValueError when it has no time zone (Vestnik stores aware UTC datetimes)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given; Vestnik stores aware UTC datetimes")
    return value


def aware_iso(value: datetime | None) -> str | None:
    """ISO 8601 with its offset (exact to the microsecond), as a JSON parameter carries a datetime."""
    return None if value is None else aware(value).isoformat()


class UTCDateTime(TypeDecorator):
    """Timezone-aware datetimes on both backends (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        aware(value)
        if dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: Json}


class NotificationStatus(str, enum.Enum):
    pending = "pending"
    processing = "processing"
    sent = "sent"
    failed = "failed"
    canceled = "canceled"


class OutboxStatus(str, enum.Enum):
    pending = "pending"  # committed by the CRM, not yet confirmed by the broker
    published = "published"  # the broker confirmed it
    processed = "processed"  # handle_event created its notifications
    failed = "failed"  # bad payload: reason in ``error``; nothing was created


class Category(str, enum.Enum):
    service = "service"
    marketing = "marketing"


class AdminRole(str, enum.Enum):
    admin = "admin"
    support = "support"  # read-only


def _crm_id_default(context: Any) -> str:
    """An integer client's ``crm_id`` is its key's decimal text (a string id's is always given)."""
    return str(context.get_current_parameters()["id"])


class Client(Base):
    """A client as the CRM knows it, with the notification preferences."""

    __tablename__ = "clients"
    __table_args__ = (
        UniqueConstraint("crm_id", name="uq_clients_crm_id"),
        # a positive key is an integer id's own: its crm_id is the key's decimal text, so "42" and 42 meet
        CheckConstraint("id < 0 OR crm_id = CAST(id AS TEXT)", name="ck_clients_crm_id"),
    )

    # The row key every table refers to: an integer CRM id is its own key; a string id (a UUID) gets a
    # negative key from a sequence (shared/client_ids.py, migration 0024).
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    #: the CRM's own id as text ("42", "7f0c1b9e-..."): what every page, export and API answer shows
    crm_id: Mapped[str] = mapped_column(String(64), default=_crm_id_default)
    name: Mapped[str] = mapped_column(String(200), default="")
    # The client's phone in E.164 (+79161234567): identity, not a channel address.  A webhook may name a
    # client by it (webapp/webhooks.py); not unique (a family may share one), so a look-up that finds two
    # clients is refused rather than guessed.
    phone: Mapped[str | None] = mapped_column(String(16), index=True)
    locale: Mapped[str] = mapped_column(String(10), default="ru")
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Moscow")
    allow_service_notifications: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_marketing_notifications: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The CRM's last activity of the client (a visit, a payment): broadcasts filter on it.
    last_active_at: Mapped[datetime | None] = mapped_column(index=True)
    # Set when the CRM asked Vestnik to forget the client (DELETE /api/v1/clients/{id}): contact data
    # erased, every switch off, history kept without personal data; a later upsert brings it back.
    forgotten_at: Mapped[datetime | None] = mapped_column()
    # The client's own quiet hours, minutes after local midnight (workers/quiet_hours.py): both NULL
    # follow the category's default window; equal values mean "any time suits me".
    quiet_hours_start_min: Mapped[int | None] = mapped_column(Integer)
    quiet_hours_end_min: Mapped[int | None] = mapped_column(Integer)
    #: the client's addresses and switches, one row per channel (``client_addresses``)
    addresses: Mapped[dict[str, ClientAddress]] = relationship(
        collection_class=attribute_keyed_dict("channel"), cascade="all, delete-orphan", lazy="selectin",
        back_populates="client")

    # -------------------------------------------------------------- per channel (no channel is named)

    def _address_row(self, channel: str) -> ClientAddress:
        row = self.addresses.get(channel)
        if row is None:
            row = self.addresses[channel] = ClientAddress(channel=channel)
        return row

    def address(self, channel: str) -> str | None:
        """The client's address on ``channel`` as stored (None: none)."""
        row = self.addresses.get(channel)
        return row.address if row is not None else None

    def set_address(self, channel: str, value: str | None) -> bool:
        """Store an address (None or blank removes it); a changed address gets a fresh chance
        (its unreachable mark is cleared).  Returns whether it changed."""
        value = value.strip() if isinstance(value, str) else value
        value = value or None
        if value == self.address(channel):
            return False
        row = self._address_row(channel)
        row.address = value
        row.unreachable_reason = row.unreachable_at = row.verified_at = None
        row.updated_at = utcnow()
        return True

    def channel_enabled(self, channel: str) -> bool:
        """The client's own switch for the channel (on unless the client switched it off)."""
        row = self.addresses.get(channel)
        return True if row is None else bool(row.enabled)

    def set_channel_enabled(self, channel: str, on: bool) -> None:
        row = self.addresses.get(channel)
        if row is None and on:
            return  # on is what no row means
        row = self._address_row(channel)
        if row.enabled != bool(on):
            row.enabled = bool(on)
            row.updated_at = utcnow()

    def unreachable_reason(self, channel: str) -> str | None:
        row = self.addresses.get(channel)
        return row.unreachable_reason if row is not None else None

    def set_unreachable(self, channel: str, reason: str | None) -> None:
        """A provider said the address is dead (``reason``), or it works again (None)."""
        row = self.addresses.get(channel)
        if row is None and reason is None:
            return
        row = self._address_row(channel)
        row.unreachable_reason = reason[:500] if reason else None
        row.unreachable_at = utcnow() if reason else None
        row.updated_at = utcnow()

    def __str__(self) -> str:
        return f"{self.name} (#{self.crm_id or self.id})"  # the CRM id, never a string id's row key


def _legacy_accessors() -> None:
    """The names the client record uses (``client.email``, ``client.telegram_chat_id``,
    ``client.notifications_<channel>_enabled``, ``client.<channel>_unreachable_reason``) as
    plain Python accessors over ``addresses``, generated from the wire table: code and tests
    that construct or read a client by those names keep working, and no column exists per channel."""
    def address(channel: str) -> property:
        return property(lambda self: self.address(channel), lambda self, v: self.set_address(channel, v))

    def switch(channel: str) -> property:
        return property(lambda self: self.channel_enabled(channel),
                        lambda self, v: self.set_channel_enabled(channel, bool(v)))

    def unreachable(channel: str) -> property:
        return property(lambda self: self.unreachable_reason(channel),
                        lambda self, v: self.set_unreachable(channel, v))

    for field, channel in ADDRESS_FIELDS.items():
        setattr(Client, field, address(channel))
        setattr(Client, f"notifications_{channel}_enabled", switch(channel))
        setattr(Client, f"{channel}_unreachable_reason", unreachable(channel))


class ClientAddress(Base):
    """A client's address on one channel, the client's switch for it, and whether a provider
    declared it dead.  A new channel needs no new column: it is one more ``channel`` value."""

    __tablename__ = "client_addresses"
    __table_args__ = (
        # The bot finds a client by chat id on every update; a broadcast de-duplicates by address.
        Index("ix_client_addresses_channel_address", "channel", "address"),
    )

    client_id: Mapped[int] = mapped_column(BigId, ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    address: Mapped[str | None] = mapped_column(String(2048))
    #: the client's own switch for the channel (the profile, the CRM's ``<channel>_enabled``)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: when the client proved the address is theirs (the bot's /start, a sign-in link); None: not proven
    verified_at: Mapped[datetime | None] = mapped_column()
    #: set when a provider says the address is dead (blocked bot, no mailbox, 410 Gone); cleared on change
    unreachable_reason: Mapped[str | None] = mapped_column(Text)
    unreachable_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    client: Mapped[Client] = relationship(back_populates="addresses")


_legacy_accessors()


class NotificationTemplate(Base):
    __tablename__ = "notification_templates"
    __table_args__ = (UniqueConstraint("code", "channel", "locale", name="uq_template_code_channel_locale"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(32))
    locale: Mapped[str] = mapped_column(String(10), default="ru")
    category: Mapped[str] = mapped_column(String(20), default=Category.service.value)
    name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text, default="")
    # Telegram inline buttons as the admin wrote them (shared/buttons.py); NULL: none
    buttons: Mapped[str | None] = mapped_column(Text)
    variables_schema: Mapped[dict[str, Any] | None] = mapped_column(Json)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # NULL while the template is the shipped default: `db upgrade` may refresh it then.
    updated_by: Mapped[str | None] = mapped_column(String(100))

    def __str__(self) -> str:
        return f"{self.code} / {self.channel} / {self.locale}"


class OutboxEvent(Base):
    """The transactional outbox: written by the CRM inside its own transaction."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        # The relay's claim query reads only unpublished rows: keep that index tiny.
        Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_outbox_key", "key"),
        Index("ix_outbox_status_created", "status", "created_at"),
        Index("ix_outbox_unknown_clients", "processed_at",
              postgresql_where=text("unknown_clients IS NOT NULL"), sqlite_where=text("unknown_clients IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_type: Mapped[str] = mapped_column(String(100))
    recipients: Mapped[list[int] | None] = mapped_column(Json)
    data: Mapped[dict[str, Any]] = mapped_column(Json, default=dict, server_default=text("'{}'"))
    key: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    send_at: Mapped[datetime | None] = mapped_column()
    # Server defaults too, so a CRM may also INSERT with plain SQL (docs/integration.md).
    initiator: Mapped[str] = mapped_column(String(100), default="system", server_default="system")
    status: Mapped[str] = mapped_column(String(20), default=OutboxStatus.pending.value, server_default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("CURRENT_TIMESTAMP"))
    published_at: Mapped[datetime | None] = mapped_column()
    processed_at: Mapped[datetime | None] = mapped_column()
    publish_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The recipients Vestnik did not know when it handled the event (the first 1000; NULL: none): the
    # dashboard and /metrics count such events, the event's page lists the ids.
    unknown_clients: Mapped[list[str] | None] = mapped_column(Json)


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        # handle_event is idempotent: one row per event x client x channel x rule step.
        UniqueConstraint("event_id", "recipient_id", "channel", "step", name="uq_notification_origin"),
        # The scheduler's "due" query and the delivery claim read pending rows only.
        Index(
            "ix_notifications_due",
            "send_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        # A delivery pump's claim: one channel's due rows, oldest first (migration 0012).
        Index(
            "ix_notifications_channel_due",
            "channel",
            "send_at",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index(
            "ix_notifications_processing",
            "locked_until",
            postgresql_where=text("status = 'processing'"),
            sqlite_where=text("status = 'processing'"),
        ),
        # Every status change writes an entry into each index without a predicate and each whose predicate
        # the new row meets (status is in the predicates: no update that moves status is HOT).  So an index
        # covers only the rows its queries look for (migration 0023): cancel by key and the history's key
        # filter name a key; the status filter reads failed and canceled rows here, sent ones along
        # ix_notifications_created and pending or processing ones in their own partial indexes.
        Index("ix_notifications_key", "key", postgresql_where=text("key IS NOT NULL"),
              sqlite_where=text("key IS NOT NULL")),
        Index("ix_notifications_created", "created_at"),
        Index("ix_notifications_recipient_created", "recipient_id", "created_at"),
        Index("ix_notifications_status_created", "status", "created_at",
              postgresql_where=text("status IN ('failed', 'canceled')"),
              sqlite_where=text("status IN ('failed', 'canceled')")),
        # A broadcast reaches one client, and one address, once per channel (resends take another step);
        # rows without a broadcast are never in conflict here (NULLs are distinct), so they are left out.
        Index("uq_notification_broadcast", "broadcast_id", "recipient_id", "channel", "step", unique=True,
              postgresql_where=text("broadcast_id IS NOT NULL"), sqlite_where=text("broadcast_id IS NOT NULL")),
        Index("uq_notification_broadcast_address", "broadcast_id", "channel", "recipient_address", "step",
              unique=True, postgresql_where=text("broadcast_id IS NOT NULL"),
              sqlite_where=text("broadcast_id IS NOT NULL")),
        Index("ix_notifications_broadcast_status", "broadcast_id", "status", "channel",
              postgresql_where=text("broadcast_id IS NOT NULL"), sqlite_where=text("broadcast_id IS NOT NULL")),
        # Rows a broadcast made but has not handed to delivery yet (send_at NULL): its feeder's queue.
        Index(
            "ix_notifications_broadcast_held",
            "broadcast_id",
            "channel",
            "id",
            postgresql_where=text("status = 'pending' AND send_at IS NULL"),
            sqlite_where=text("status = 'pending' AND send_at IS NULL"),
        ),
        # A broadcast's rows handed over and due: what its feeder counts as in flight (migration 0012).
        Index(
            "ix_notifications_broadcast_due",
            "broadcast_id",
            "send_at",
            postgresql_where=text("status = 'pending' AND send_at IS NOT NULL AND broadcast_id IS NOT NULL"),
            sqlite_where=text("status = 'pending' AND send_at IS NOT NULL AND broadcast_id IS NOT NULL"),
        ),
        # The admin history's filters, newest first (migration 0004).
        Index("ix_notifications_event_created", "event_type", "created_at"),
        Index(
            "ix_notifications_by_admin",
            "created_at",
            postgresql_where=text("initiator <> 'system'"),
            sqlite_where=text("initiator <> 'system'"),
        ),
        # The history's "Chat" filter: posts to groups and channels have no client (migration 0021).
        Index(
            "ix_notifications_chat_posts",
            "recipient_address",
            "created_at",
            postgresql_where=text("recipient_id IS NULL"),
            sqlite_where=text("recipient_id IS NULL"),
        ),
        # ... and an event type together with "started by an admin" (two rare filters; migration 0007).
        Index(
            "ix_notifications_by_admin_event",
            "event_type",
            "created_at",
            postgresql_where=text("initiator <> 'system'"),
            sqlite_where=text("initiator <> 'system'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # NULL only for an admin's "send test to me" (recipient_address is the admin's own).
    recipient_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("clients.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(32))
    recipient_address: Mapped[str] = mapped_column(String(320))
    event_type: Mapped[str] = mapped_column(String(100))
    template_code: Mapped[str] = mapped_column(String(100))
    payload_json: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    status: Mapped[str] = mapped_column(String(20), default=NotificationStatus.pending.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
    initiator: Mapped[str] = mapped_column(String(100), default="system")
    # What delivery needs
    category: Mapped[str] = mapped_column(String(20), default=Category.service.value)
    locale: Mapped[str] = mapped_column(String(10), default="ru")
    # NULL only while a broadcast holds the row back (paced hand-over, see workers/broadcasts.py).
    send_at: Mapped[datetime | None] = mapped_column()
    key: Mapped[str | None] = mapped_column(String(200))
    step: Mapped[str] = mapped_column(String(100), default="notice")  # the rule step, e.g. "reminder@-86400"
    expires_at: Mapped[datetime | None] = mapped_column()  # too late to make sense after this: canceled
    event_id: Mapped[int | None] = mapped_column(BigId)  # outbox rows are cleaned; no FK
    broadcast_id: Mapped[int | None] = mapped_column(BigId)
    locked_until: Mapped[datetime | None] = mapped_column()  # lease of a 'processing' row
    # When the row was last handed to the broker; the scheduler re-drives rows
    # that are due but were never handed over (crash between commit and enqueue).
    queued_at: Mapped[datetime | None] = mapped_column()
    delivery_uncertain: Mapped[bool] = mapped_column(Boolean, default=False)
    # The exact text that was sent (rendered just before the send)
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    # What was attached, as resolved for the send: {"source": "url"|"file"|"telegram_file_id", "ref",
    # "name", "type", "bytes"} (workers/attachments.py); NULL: nothing
    attachment: Mapped[dict[str, Any] | None] = mapped_column(Json)

    recipient: Mapped[Client | None] = relationship(lazy="joined")
    attempts_log: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="notification", order_by="DeliveryAttempt.id", lazy="select"
    )


class NotificationDayCount(Base):
    """How many notifications were created per UTC day, channel, status and "delivery uncertain", with
    the sum and the largest of the sent ones' waits (due to sent, seconds): the dashboard's charts
    without reading the rows (``shared/day_counts.py``).

    On PostgreSQL, statement-level triggers on ``notifications`` (migration 0020) append one row of
    differences per statement and key it changed (set-based; inserts only, so writers never wait on
    each other), in the writer's own transaction, so the sums are exact; the scheduler's reap tick
    folds them into one row per key.  SQLite has no such trigger: there the dashboard groups the rows.
    """

    __tablename__ = "notification_day_counts"
    __table_args__ = (Index("ix_notification_day_counts_day", "day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    channel: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(20))
    uncertain: Mapped[bool] = mapped_column(Boolean)
    n: Mapped[int] = mapped_column(BigInteger)  # rows (a difference until folded)
    waited: Mapped[int] = mapped_column(BigInteger)  # of them sent with a sent_at: the waits summed below
    wait_sum: Mapped[float] = mapped_column(Float)
    wait_max: Mapped[float | None] = mapped_column(Float)  # the worst wait seen; never lowered


class DeliveryAttempt(Base):
    """One row per call to a provider, written before the call and closed after it."""

    __tablename__ = "delivery_attempts"
    # fillfactor 70 (migration 0025): room on the page for the closed row, so closing is a HOT update.
    __table_args__ = (Index("ix_attempts_notification", "notification_id"), Index("ix_attempts_started", "started_at"),
                      {"postgresql_with": {"fillfactor": 70}})

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    notification_id: Mapped[int] = mapped_column(BigId, ForeignKey("notifications.id", ondelete="CASCADE"))
    attempt_no: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    outcome: Mapped[str | None] = mapped_column(String(20))  # channels.base.Outcome; NULL = in flight
    error: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(200))

    notification: Mapped[Notification] = relationship(back_populates="attempts_log")


class AdminUser(Base):
    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="", server_default="")  # shown in the audit
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20), default=AdminRole.admin.value)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Wrong passwords are counted per address in attempt_counters (unknown addresses alike).
    # Part of the login session; rotated at logout and password change, so a
    # copied session cookie stops working (Flask's sessions live client-side).
    session_token: Mapped[str] = mapped_column(String(64), default=lambda: secrets.token_hex(16))
    last_login_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    telegram_chat_id: Mapped[str | None] = mapped_column(String(64))  # "send test to me" on Telegram
    # The admin's language (shared.locales.ADMIN_LOCALES); NULL: the browser's Accept-Language decides.
    locale: Mapped[str | None] = mapped_column(String(10))

    def __str__(self) -> str:
        return self.email


class TemplateVersion(Base):
    """A previous version of a template, kept at every change (viewable, restorable)."""

    __tablename__ = "notification_template_versions"
    __table_args__ = (Index("ix_template_versions_template", "template_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    template_id: Mapped[int] = mapped_column(BigId, ForeignKey("notification_templates.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text, default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RuleOverride(Base):
    """An admin's change to a default rule: switched off, or other offsets per step."""

    __tablename__ = "rule_overrides"

    event_type: Mapped[str] = mapped_column(String(100), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    offsets: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)  # step name -> [seconds, ...]
    #: step name -> an attachment reference (shared/attachment_refs.py) the step's messages carry
    attachments: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    updated_by: Mapped[str | None] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StoredFile(Base):
    """A file an admin uploaded for rules and broadcasts to attach (``file:<id>``).

    Kept in the database, not on a disk: the web process that receives the upload and the worker
    processes that send it may run on different hosts, and the database is the one store they all
    share, backed up and transactional with the broadcast or rule that names the file
    (docs/attachments.md).  ``content`` is loaded only when asked for (lists read the rest)."""

    __tablename__ = "stored_files"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    mime_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    uploaded_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A key a CRM calls the HTTP API with; only its SHA-256 is stored (the key is shown once)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    #: the key's first characters, to recognise it in lists ("vk_3fA9c…"); not enough to use it
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()
    revoked_by: Mapped[str | None] = mapped_column(String(100))
    last_used_at: Mapped[datetime | None] = mapped_column()  # updated at most once a minute

    @property
    def actor(self) -> str:
        """How the audit log and the outbox name what this key did."""
        return f"api_key:{self.id}"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_created", "created_at"), Index("ix_audit_object", "object_type", "object_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    actor: Mapped[str] = mapped_column(String(100))  # "admin:<id>", "client:<id>", "system", "cli"
    action: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str] = mapped_column(String(50))
    object_id: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict[str, Any] | None] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RegistryEntry(Base):
    """The event registry as JSON Schema, for the SQL functions (rewritten by ``vestnik db upgrade``).

    Rows: ``event:<type>`` per event type, ``recipients``, ``client_id``,
    ``client``, ``timestamp``, ``limits`` and ``defaults`` (see
    :func:`vestnik.shared.events.registry_document`).
    """

    __tablename__ = "vestnik_registry"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(Json)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClientTokenPurpose(str, enum.Enum):
    sign_in_link = "sign_in_link"  # emailed link
    sign_in_code = "sign_in_code"  # code sent by the bot; token_hash is the challenge's, code_hash the code's
    telegram_connect = "telegram_connect"  # the deep link's start parameter
    session = "session"  # a signed-in browser; used_at set at logout


class ClientToken(Base):
    """A one-time secret of a client, stored only as a keyed hash (never readable from the DB).

    ``used_at`` makes it one-time: it is set by a conditional UPDATE, so two
    concurrent uses cannot both succeed.
    """

    __tablename__ = "client_tokens"
    __table_args__ = (
        Index("ix_client_tokens_client", "client_id", "purpose"),
        Index("ix_client_tokens_expires", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[int] = mapped_column(BigId, ForeignKey("clients.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    code_hash: Mapped[str | None] = mapped_column(String(64))
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()


class AttemptCounter(Base):
    """Attempts per scope in a window (sign-ins per address or IP, wrong admin passwords per address).

    Bumped by one atomic statement (``shared/counters.py``), so a limit holds
    exactly under parallel requests.  Written whether or not an address belongs
    to anyone, so its answers say nothing about who exists.
    """

    __tablename__ = "attempt_counters"
    __table_args__ = (Index("ix_attempt_counters_window", "window_ends_at"),)

    scope: Mapped[str] = mapped_column(String(100), primary_key=True)  # "<kind>:<keyed hash or IP>"
    count: Mapped[int] = mapped_column(Integer, default=0)
    window_ends_at: Mapped[datetime] = mapped_column()


# ------------------------------------------------------------------ broadcasts


class BroadcastStatus(str, enum.Enum):
    draft = "draft"  # being prepared: count and preview, nothing created yet
    testing = "testing"  # the test stage (a test group or the first N clients) is being sent or looked at
    running = "running"  # sending to the whole selection
    paused = "paused"  # by an admin or by itself (failure rate over the threshold)
    completed = "completed"
    canceled = "canceled"
    scheduled = "scheduled"  # confirmed, waiting for its moment (editable and cancelable until then)


class ClientGroup(Base):
    """A client's membership of a group or class (кружок), by the CRM's group name."""

    __tablename__ = "client_groups"
    __table_args__ = (Index("ix_client_groups_client", "client_id"),)

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    client_id: Mapped[int] = mapped_column(BigId, ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)


class ClientTag(Base):
    __tablename__ = "client_tags"
    __table_args__ = (Index("ix_client_tags_client", "client_id"),)

    tag: Mapped[str] = mapped_column(String(100), primary_key=True)
    client_id: Mapped[int] = mapped_column(BigId, ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)


class Broadcast(Base):
    """One template to a selection of clients, sent in stages, paced by the channel limits."""

    __tablename__ = "broadcasts"
    __table_args__ = (Index("ix_broadcasts_status", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    template_code: Mapped[str] = mapped_column(String(100))
    channels: Mapped[list[str]] = mapped_column(Json, default=list)
    category: Mapped[str] = mapped_column(String(20), default=Category.service.value)
    targeting: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)  # see vestnik.shared.targeting.Targeting
    data: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)  # template data
    status: Mapped[str] = mapped_column(String(20), default=BroadcastStatus.draft.value)
    initiator: Mapped[str] = mapped_column(String(100))  # "admin:<id>" or "system"
    event_id: Mapped[int | None] = mapped_column(BigId, unique=True)  # a CRM's mass_broadcast event
    # Stage settings
    mode: Mapped[str] = mapped_column(String(10), default="manual")  # manual | auto
    test_size: Mapped[int] = mapped_column(Integer, default=10)  # the first N clients of the selection
    test_group: Mapped[str | None] = mapped_column(String(200))  # or the members of this group
    stage_wait_s: Mapped[int] = mapped_column(Integer, default=60)  # auto: look this long after the test
    max_failure_rate: Mapped[float] = mapped_column(Float, default=0.2)  # pause itself above this
    # Where sending stands
    stage: Mapped[str | None] = mapped_column(String(10))  # test | all
    expand_cursor: Mapped[int] = mapped_column(BigId, default=0)  # last client id expanded in this stage
    expanded_clients: Mapped[int] = mapped_column(Integer, default=0)  # clients expanded in this stage
    expand_done: Mapped[bool] = mapped_column(Boolean, default=False)
    health: Mapped[dict[str, Any] | None] = mapped_column(Json)  # the failure-rate window's snapshot
    # The counts the admin confirmed
    planned_clients: Mapped[int | None] = mapped_column(Integer)
    planned_messages: Mapped[int | None] = mapped_column(Integer)
    planned_by_channel: Mapped[dict[str, Any] | None] = mapped_column(Json)
    paused_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    test_done_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    fed_at: Mapped[datetime | None] = mapped_column()  # the feeder's last tick
    expanded_at: Mapped[datetime | None] = mapped_column()  # the expansion's heartbeat (or when it was queued)
    # Scheduling (workers/broadcast_schedule.py): the first wave's moment, and for "at a local time in
    # each client's zone" the local date and time; the waves are BroadcastWave rows.
    scheduled_at: Mapped[datetime | None] = mapped_column()
    local_date: Mapped[str | None] = mapped_column(String(10))  # YYYY-MM-DD
    local_time: Mapped[str | None] = mapped_column(String(5))  # HH:MM
    # The time zones the current expansion pass covers (a wave); NULL: every client.
    zones: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # Progress samples for the rate and the estimated end: [[unix seconds, {channel: finished}], ...]
    samples: Mapped[list[Any] | None] = mapped_column(Json)

    def __str__(self) -> str:
        return f"{self.name} (#{self.id})"


class BroadcastClient(Base):
    """An uploaded list of client ids a broadcast is limited to (or a CRM event's recipients)."""

    __tablename__ = "broadcast_clients"

    broadcast_id: Mapped[int] = mapped_column(BigId, ForeignKey("broadcasts.id", ondelete="CASCADE"),
                                              primary_key=True)
    client_id: Mapped[int] = mapped_column(BigId, primary_key=True)  # no FK: an unknown id is reported


class BroadcastWave(Base):
    """One moment at which a scheduled broadcast reaches the clients of some time zones.

    A broadcast at a moment has one wave (zone ``*``); one at a local time in each client's zone
    has a wave per time zone its clients live in, plus ``*`` (at the default zone's moment) for
    clients in any other zone.  The scheduler starts a wave when its ``send_at`` has come.
    """

    __tablename__ = "broadcast_waves"
    __table_args__ = (Index("ix_broadcast_waves_due", "send_at"),)

    broadcast_id: Mapped[int] = mapped_column(BigId, ForeignKey("broadcasts.id", ondelete="CASCADE"),
                                              primary_key=True)
    zone: Mapped[str] = mapped_column(String(64), primary_key=True)  # an IANA zone, or "*"
    send_at: Mapped[datetime] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()


class QuietHours(Base):
    """An admin's quiet hours for a category (``workers/quiet_hours.py`` holds the defaults)."""

    __tablename__ = "quiet_hours"

    category: Mapped[str] = mapped_column(String(20), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    start_min: Mapped[int] = mapped_column(Integer)  # minutes after local midnight
    end_min: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str | None] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ReactionKind(str, enum.Enum):
    unsubscribe = "unsubscribe"  # the client left marketing after this message
    button = "button"  # the client pressed one of the message's buttons


class NotificationReaction(Base):
    """What a client did with a message they got: the reports count these."""

    __tablename__ = "notification_reactions"
    __table_args__ = (
        Index("ix_reactions_notification", "notification_id"),
        Index("ix_reactions_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    notification_id: Mapped[int] = mapped_column(BigId, ForeignKey("notifications.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    value: Mapped[str | None] = mapped_column(String(100))  # the button pressed
    actor: Mapped[str | None] = mapped_column(String(64))  # who pressed it: "telegram:<user id>"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Chat(Base):
    """A group or channel an admin registered as a recipient (a Telegram group, supergroup or channel
    with the bot in it): posts go there like any notification, with no client behind them.

    Verified through the provider when added and again on demand (``workers/chats.py``): ``title``,
    ``kind`` and whether the bot may post are the provider's answers.  A chat that removed the bot, or
    that a send found gone, is ``unreachable`` with the reason, like a client's dead address.
    """

    __tablename__ = "chats"
    __table_args__ = (UniqueConstraint("channel", "address", name="uq_chats_channel_address"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    #: the provider's id of the chat (Telegram: -100...), what notifications.recipient_address holds
    address: Mapped[str] = mapped_column(String(320))
    title: Mapped[str] = mapped_column(String(255), default="")
    #: the provider's kind: Telegram ``channel``, ``supergroup`` or ``group``
    kind: Mapped[str] = mapped_column(String(20), default="")
    username: Mapped[str | None] = mapped_column(String(64))
    #: the language of its posts (the template's locale asked first, then the fallback chain)
    locale: Mapped[str] = mapped_column(String(10), default="ru")
    #: the bot's standing there as last seen: creator, administrator, member, restricted, left, kicked
    bot_status: Mapped[str] = mapped_column(String(20), default="")
    can_post: Mapped[bool] = mapped_column(Boolean, default=False)
    #: event type -> template code: an event of that type also posts that template here (a staff alert)
    subscriptions: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    verified_at: Mapped[datetime | None] = mapped_column()
    unreachable_reason: Mapped[str | None] = mapped_column(Text)
    unreachable_at: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(100), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __str__(self) -> str:
        return f"{self.title or self.address} ({self.kind or self.channel})"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("subscriptions", {})
        kwargs.setdefault("locale", "ru")
        super().__init__(**kwargs)
