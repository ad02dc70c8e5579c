"""Vestnik's copy of a CRM's clients: upsert (merge, never reset), read, forget.

The rules are the client record's (``shared/client_record.py``): an absent
field is never changed, a given one is set, ``null`` removes an address.  The
HTTP API and the admin use these functions; the SQL function
``vestnik_upsert_client`` (and so ``vestnik_client.upsert_clients``) applies
the same rules in SQL, and ``tests/integration/test_client_sync.py`` holds
both to the same cases.

Forgetting (``DELETE /api/v1/clients/{id}``) erases what identifies a person
(name, phone, addresses, group and tag memberships, sign-in tokens, and the
addresses, texts and data of the client's notifications), switches every
channel off, and keeps the rest of the history (which event, which channel,
when, with which outcome) so that counts and audits stay true.  What was still
to be sent is canceled first by the notifications' owner
(``workers.notifications.cancel_client``).  The CRM's id (``crm_id``, a UUID or an
integer) stays: it is the CRM's identifier of the client, not personal data,
and the audit and the CRM keep naming the client by it (a later upsert under
the same id brings the client back).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vestnik.shared import bounds, client_ids
from vestnik.shared.addresses import ADDRESS_FIELDS, CHANNELS, SWITCH_FIELDS
from vestnik.shared.client_record import PREFERENCE_COLUMNS
from vestnik.shared.models import (
    AuditLog,
    Client,
    ClientGroup,
    ClientTag,
    ClientToken,
    DeliveryAttempt,
    Notification,
    utcnow,
)
from vestnik.shared.wire import CLIENT_ID

ERASED = "[erased]"
#: why the notifications still to be sent were canceled
FORGOTTEN = "client forgotten at the CRM's request"


class UnknownClientId(ValueError):
    """A value that is no client id (see shared/client_ids.py): not an integer 1..2**63-1 nor a string of
    1 to 64 allowed characters."""


def _crm_id(client_id: Any) -> str:
    crm_id = client_ids.crm_id_of(client_id)
    if crm_id is None:
        raise UnknownClientId(f"id: {client_id!r} {CLIENT_ID.error}")
    return crm_id


def _column_values(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Record fields (already validated) as ``clients`` column values; the per-channel ones
    (addresses, switches) keep their record names for :func:`apply`."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name in ("groups", "tags"):
            continue
        if name in ADDRESS_FIELDS and value is not None:
            value = str(value)
        elif name == "last_active_at" and value is not None:
            value = bounds.moment(value, name)
        out[PREFERENCE_COLUMNS.get(name, name)] = value
    return out


def apply(session: Session, client: Client, values: Mapping[str, Any], *, groups: list[str] | None = None,
          tags: list[str] | None = None) -> None:
    """Set the given values on a client; a changed address gets a fresh chance (Client.set_address)."""
    for attr, value in values.items():
        if attr in ADDRESS_FIELDS:
            client.set_address(ADDRESS_FIELDS[attr], value)
        elif attr in SWITCH_FIELDS:
            if value is not None:
                client.set_channel_enabled(SWITCH_FIELDS[attr], bool(value))
        else:
            setattr(client, attr, value)
    client.forgotten_at = None
    client.updated_at = utcnow()
    _memberships(session, client.id, groups, tags)


def _memberships(session: Session, key: int, groups: list[str] | None, tags: list[str] | None) -> None:
    for names, model, column in ((groups, ClientGroup, "name"), (tags, ClientTag, "tag")):
        if names is None:
            continue
        session.execute(delete(model).where(model.client_id == key))
        session.add_all([model(client_id=key, **{column: name})
                         for name in dict.fromkeys(n.strip() for n in names)])


def upsert(session: Session, client_id: Any, fields: Mapping[str, Any], *, default_locale: str = "ru",
           default_timezone: str = "Europe/Moscow") -> tuple[Client, bool]:
    """Create or merge one client (fields validated by the caller); return it and whether it was created."""
    crm_id = _crm_id(client_id)
    values = _column_values(fields)
    groups, tags = fields.get("groups"), fields.get("tags")
    key = client_ids.resolve(session, client_id)
    client = None if key is None else session.get(
        Client, key, with_for_update=session.get_bind().dialect.name == "postgresql")
    if client is not None:
        apply(session, client, values, groups=groups, tags=tags)
        return client, False
    if key is None:  # a string id no client has yet: a new negative key (shared/client_ids.py)
        key = client_ids.new_key(session)
    now = utcnow()
    columns = {k: v for k, v in values.items() if k not in ADDRESS_FIELDS and k not in SWITCH_FIELDS}
    client = Client(id=key, crm_id=crm_id, **{"name": "", "locale": default_locale, "timezone": default_timezone,
                               "allow_service_notifications": True, "allow_marketing_notifications": False,
                               **columns}, created_at=now, updated_at=now)
    apply(session, client, {k: v for k, v in values.items() if k not in columns}, groups=None, tags=None)
    try:
        with session.begin_nested():  # a concurrent request may create the same client first
            session.add(client)
            session.flush()
    except IntegrityError:  # the same key, or the same string id under another key
        client = session.get(Client, client_ids.resolve(session, client_id), populate_existing=True)
        apply(session, client, values, groups=groups, tags=tags)
        return client, False
    _memberships(session, key, groups, tags)
    return client, True


def find(session: Session, client_id: Any) -> Client | None:
    key = client_ids.resolve(session, client_id)
    return None if key is None else session.get(Client, key)


def view(session: Session, client: Client) -> dict[str, Any]:
    """A client as the API shows it (the record's names; times as ISO 8601)."""
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    groups = session.scalars(select(ClientGroup.name).where(ClientGroup.client_id == client.id)
                             .order_by(ClientGroup.name)).all()
    tags = session.scalars(select(ClientTag.tag).where(ClientTag.client_id == client.id).order_by(ClientTag.tag)).all()
    return {
        "id": client.crm_id, "name": client.name, "phone": client.phone,
        **{field: client.address(channel) for field, channel in ADDRESS_FIELDS.items()},
        "locale": client.locale, "timezone": client.timezone,
        **{field: client.channel_enabled(channel) for field, channel in SWITCH_FIELDS.items()},
        **{field: bool(getattr(client, column)) for field, column in PREFERENCE_COLUMNS.items()},
        "groups": list(groups), "tags": list(tags), "last_active_at": iso(client.last_active_at),
        "unreachable": {channel: client.unreachable_reason(channel) for channel in CHANNELS},
        "created_at": iso(client.created_at), "updated_at": iso(client.updated_at),
        "forgotten_at": iso(client.forgotten_at),
    }


def forget(session: Session, client: Client) -> int:
    """Erase the client's personal data and keep its history without it; return how many notifications
    were erased.  The caller cancels what was still to be sent first (workers.notifications.cancel_client)."""
    now = utcnow()
    key = client.id
    client.name = ""
    client.phone = None
    for channel in CHANNELS:
        client.set_address(channel, None)
        client.set_unreachable(channel, None)
        client.set_channel_enabled(channel, False)
    client.last_active_at = None
    for column in PREFERENCE_COLUMNS.values():
        setattr(client, column, False)
    client.forgotten_at = now
    client.updated_at = now
    _memberships(session, key, [], [])
    session.execute(delete(ClientToken).where(ClientToken.client_id == key))
    erased = session.execute(
        update(Notification).where(Notification.recipient_id == key)
        .values(recipient_address=ERASED, subject=None, body=None, payload_json={}, updated_at=now)
        .execution_options(synchronize_session=False)).rowcount
    # Provider messages may quote the address ("550 anna@example.com: no such mailbox").
    session.execute(
        update(Notification).where(Notification.recipient_id == key, Notification.last_error.is_not(None),
                                   Notification.last_error != FORGOTTEN)
        .values(last_error=ERASED).execution_options(synchronize_session=False))
    session.execute(
        update(DeliveryAttempt).where(DeliveryAttempt.error.is_not(None),
                                      DeliveryAttempt.notification_id.in_(
                                          select(Notification.id).where(Notification.recipient_id == key)))
        .values(error=ERASED).execution_options(synchronize_session=False))
    # The audit keeps who changed what and when, not the values: an admin's edit of the client holds
    # its old and new name, phone and addresses ([old, new] pairs); its field names are not personal.
    for row in session.scalars(select(AuditLog).where(AuditLog.object_type == "client",
                                                      AuditLog.object_id == client.crm_id)):
        if row.details:
            row.details = {k: v if k == "fields" else _erase_values(v) for k, v in row.details.items()}
    return erased


def _erase_values(value: Any) -> Any:
    """The same shape with every value erased: the keys say what changed, no value says to what."""
    if isinstance(value, dict):
        return {k: _erase_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_erase_values(v) for v in value]
    return None if value is None else ERASED
