"""A client as delivery reads it: a small read-only row, loaded set-based for a batch.

The ORM's :class:`~vestnik.shared.models.Client` with its ``selectin`` addresses
costs about 0.1 ms of CPU per client (an instance state per row and per address,
a second query with a long ``IN`` list), most of a pump's database time with
100 clients a batch.  Delivery only reads a client: its preferences (categories,
channel switches, unreachable marks), its address per channel, its name, locale,
time zone and quiet hours.  :func:`load` reads those for a batch in one Core
query into :class:`ClientView` rows, which answer to the same names as
``Client`` (``address(channel)``, ``channel_enabled``, ``unreachable_reason``,
``email``, ``telegram_chat_id``...), so ``workers/rules.py``, the channels and
``shared/composer.py`` take either.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from vestnik.shared.addresses import ADDRESS_FIELDS


@dataclass(frozen=True, slots=True)
class AddressView:
    address: str | None
    enabled: bool | None
    unreachable_reason: str | None


@dataclass(frozen=True, slots=True)
class ClientView:
    id: int
    name: str = ""
    locale: str = "ru"
    timezone: str = "Europe/Moscow"
    allow_service_notifications: bool = True
    allow_marketing_notifications: bool = False
    quiet_hours_start_min: int | None = None
    quiet_hours_end_min: int | None = None
    addresses: Mapping[str, AddressView] = field(default_factory=dict)
    #: the CRM's id as text ("42", a UUID): what a template's ``client_id`` shows (shared/client_ids.py)
    crm_id: str | None = None

    def address(self, channel: str) -> str | None:
        row = self.addresses.get(channel)
        return row.address if row is not None else None

    def channel_enabled(self, channel: str) -> bool:
        row = self.addresses.get(channel)
        return True if row is None else bool(row.enabled)

    def unreachable_reason(self, channel: str) -> str | None:
        row = self.addresses.get(channel)
        return row.unreachable_reason if row is not None else None

    def __str__(self) -> str:
        return f"{self.name} (#{self.crm_id or self.id})"


def _legacy_names() -> None:
    """``client.email``, ``client.telegram_chat_id``, ``client.<channel>_enabled``... as on ``Client``."""
    for name, channel in ADDRESS_FIELDS.items():
        setattr(ClientView, name, property(lambda self, c=channel: self.address(c)))
        setattr(ClientView, f"notifications_{channel}_enabled",
                property(lambda self, c=channel: self.channel_enabled(c)))
        setattr(ClientView, f"{channel}_unreachable_reason",
                property(lambda self, c=channel: self.unreachable_reason(c)))


_legacy_names()

_COLUMNS = ("SELECT c.id, c.name, c.locale, c.timezone, c.allow_service_notifications, "
            "c.allow_marketing_notifications, c.quiet_hours_start_min, c.quiet_hours_end_min, "
            "a.channel, a.address, a.enabled, a.unreachable_reason, c.crm_id "
            "FROM clients c LEFT JOIN client_addresses a ON a.client_id = c.id ")
#: PostgreSQL: the ids as one array parameter (one statement text whatever the batch's size)
_LOAD_PG = text(_COLUMNS + "WHERE c.id = ANY(CAST(:ids AS bigint[]))")
_LOAD = text(_COLUMNS + "WHERE c.id IN :ids").bindparams(bindparam("ids", expanding=True))


def load(session: Session, ids: Collection[int]) -> dict[int, ClientView]:
    """The clients with these ids (unknown ids are left out), with their addresses, in one query."""
    if not ids:
        return {}
    postgres = session.get_bind().dialect.name == "postgresql"
    rows = session.execute(_LOAD_PG if postgres else _LOAD, {"ids": list(ids)}).all()
    heads: dict[int, tuple[Any, ...]] = {}
    crm_ids: dict[int, str] = {}
    addresses: dict[int, dict[str, AddressView]] = {}
    for row in rows:
        client_id = row[0]
        if client_id not in heads:
            heads[client_id] = row[1:8]
            crm_ids[client_id] = row[12]
            addresses[client_id] = {}
        if row[8] is not None:
            addresses[client_id][row[8]] = AddressView(row[9], row[10], row[11])
    # The stored values as they are (a NULL time zone falls back where it is read, as with ``Client``).
    return {cid: ClientView(cid, *head, addresses[cid], crm_ids[cid]) for cid, head in heads.items()}
