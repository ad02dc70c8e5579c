"""Rules: what an event means, as a pure function of the event and the clients.

``plan_event`` decides, for each recipient and each channel, whether a
notification is created, to which address and with which template.  The
specification's rule (section 3.2): a channel the client switched off creates
nothing; the event's category (service or marketing) must be allowed too.
Nothing here touches the database or the network, so it is table-tested.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.events import category_of, get_event_type
from shared.models import Category, Client
from workers.channels.base import Channel


@dataclass(frozen=True)
class Planned:
    recipient_id: int
    channel: str
    address: str
    template_code: str
    category: str
    locale: str
    send_at: datetime | None


@dataclass(frozen=True)
class Skipped:
    recipient_id: int
    channel: str | None
    reason: str


def template_code_for(event_type: str, data: Mapping[str, Any]) -> str:
    spec = get_event_type(event_type)
    if spec.template_code:
        return spec.template_code
    return str(data["template_code"])  # mass_broadcast names its template


def allows_category(client: Client, category: Category) -> bool:
    if category is Category.marketing:
        return bool(client.allow_marketing_notifications)
    return bool(client.allow_service_notifications)


def plan_event(
    event_type: str,
    data: Mapping[str, Any],
    recipient_ids: Sequence[int],
    clients: Iterable[Client],
    channels: Mapping[str, Channel],
    *,
    send_at: datetime | None = None,
    only_channels: Iterable[str] | None = None,
) -> tuple[list[Planned], list[Skipped]]:
    """Who is told on which channel; and who is not, with the reason."""
    by_id = {c.id: c for c in clients}
    category = category_of(event_type, data)
    template_code = template_code_for(event_type, data)
    wanted = set(only_channels) if only_channels is not None else None
    planned: list[Planned] = []
    skipped: list[Skipped] = []
    for rid in dict.fromkeys(recipient_ids):  # de-duplicated, order kept
        client = by_id.get(rid)
        if client is None:
            skipped.append(Skipped(rid, None, "unknown client"))
            continue
        if not allows_category(client, category):
            skipped.append(Skipped(rid, None, f"client does not accept {category.value} notifications"))
            continue
        for name, channel in channels.items():
            if wanted is not None and name not in wanted:
                continue
            if not getattr(client, channel.preference_field, False):
                skipped.append(Skipped(rid, name, "channel switched off by the client"))
                continue
            address = channel.address_of(client)
            if not address:
                skipped.append(Skipped(rid, name, "no address"))
                continue
            if client.unreachable_reason(name):
                skipped.append(Skipped(rid, name, f"address unreachable: {client.unreachable_reason(name)}"))
                continue
            planned.append(
                Planned(rid, name, address, template_code, category.value, client.locale or "ru", send_at)
            )
    return planned, skipped
