"""Who a broadcast reaches: one rule, written once, as SQL.

A :class:`Selection` (targeting + channels + category) becomes SQL conditions
here and nowhere else; the admin's count, the preview's sample and the
expansion into notification rows all use :func:`client_conditions` and
:func:`reachable`, so the number an admin confirms is the number of rows
created (for unchanged data).

The rule, per client and channel:

- the client matches the targeting: any of the groups, any (or all) of the
  tags, the locales, has Telegram / has email, active since, and the uploaded
  list of ids; criteria combine with AND;
- the client accepts the category (service, or marketing: opt-in only);
- the channel is one of the broadcast's, switched on by the client, with an
  address that no provider has declared dead;
- one message per address and channel: two clients sharing an email (a
  parent of two pupils) get one, addressed to the client with the lowest id.

Everything is set-based (``IN (subquery)``, keyset ranges over ``clients.id``),
so it runs on 100,000 clients without loading them into Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, String, cast, distinct, exists, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from vestnik.shared.models import BroadcastClient, Category, Client, ClientAddress, ClientGroup, ClientTag, Notification
from vestnik.shared.targeting import Targeting
from vestnik.workers.channels import CHANNELS


@dataclass(frozen=True)
class Selection:
    targeting: Targeting
    channels: tuple[str, ...]
    category: Category
    broadcast_id: int | None = None  # whose uploaded list ``client_list`` refers to
    #: leave out messages this broadcast has made already (what "send to everyone" adds after a test)
    remaining_only: bool = False

    def __post_init__(self) -> None:
        unknown = [c for c in self.channels if c not in CHANNELS or CHANNELS[c].address_field is None]
        if unknown or not self.channels:
            raise ValueError(f"channels: choose from {', '.join(sorted(CHANNELS))}")


# ------------------------------------------------------------------ the rule, as SQL


def _row(channel: str) -> list[ColumnElement[bool]]:
    return [ClientAddress.client_id == Client.id, ClientAddress.channel == channel]


def address(channel: str) -> ColumnElement[str]:
    """A client's address on a channel, normalised so duplicates compare equal."""
    expr = func.trim(ClientAddress.address)
    expr = func.lower(expr) if CHANNELS[channel].address_casefold else expr
    # correlate(Client): also inside a NOT EXISTS over notifications (not_made), two levels down
    return select(expr).where(*_row(channel)).correlate(Client).scalar_subquery()


def has_address(channel: str) -> ColumnElement[bool]:
    return exists().where(*_row(channel), ClientAddress.address.is_not(None),
                          func.trim(ClientAddress.address) != "").correlate(Client)


def reachable(channel: str) -> ColumnElement[bool]:
    """The client can get this channel: switched on, an address, not declared dead."""
    return exists().where(*_row(channel), ClientAddress.enabled.is_(True), ClientAddress.address.is_not(None),
                          func.trim(ClientAddress.address) != "",
                          ClientAddress.unreachable_reason.is_(None)).correlate(Client)


def client_conditions(sel: Selection) -> list[ColumnElement[bool]]:
    """Targeting and category: the client-level half of the rule."""
    t = sel.targeting
    conds: list[ColumnElement[bool]] = []
    if sel.category is Category.marketing:
        conds.append(Client.allow_marketing_notifications.is_(True))
    else:
        conds.append(Client.allow_service_notifications.is_(True))
    if t.groups:
        conds.append(Client.id.in_(select(ClientGroup.client_id).where(ClientGroup.name.in_(t.groups))))
    if t.tags:
        tagged = select(ClientTag.client_id).where(ClientTag.tag.in_(t.tags))
        if t.all_tags and len(t.tags) > 1:
            tagged = tagged.group_by(ClientTag.client_id).having(func.count(distinct(ClientTag.tag)) == len(t.tags))
        conds.append(Client.id.in_(tagged))
    if t.locales:
        conds.append(Client.locale.in_(t.locales))
    conds += [has_address(channel) for channel in t.required_addresses()]
    if t.active_since:
        conds.append(Client.last_active_at >= t.active_since)
    if t.client_list:
        conds.append(Client.id.in_(select(BroadcastClient.client_id)
                                   .where(BroadcastClient.broadcast_id == sel.broadcast_id)))
    conds.append(or_(*(reachable(c) for c in sel.channels)))
    return conds


def not_made(sel: Selection, channel: str) -> list[ColumnElement[bool]]:
    """No row of this broadcast on this channel exists yet for the client or for the address
    (both unique keys of a broadcast's rows are served by their indexes)."""
    if not sel.remaining_only or sel.broadcast_id is None:
        return []
    n = Notification
    mine = (n.broadcast_id == sel.broadcast_id, n.channel == channel)
    return [~exists().where(*mine, n.recipient_id == Client.id),
            ~exists().where(*mine, n.recipient_address == address(channel))]


def _text(value: str) -> ColumnElement[str]:
    # Typed, so PostgreSQL knows a bare parameter in a SELECT list or a UNION.
    return cast(literal(value), String(32))


def recipients(sel: Selection, *extra: ColumnElement[bool]):
    """(channel, address, client_id) for every message the rule allows, before de-duplication."""
    parts = [
        select(_text(ch).label("channel"), address(ch).label("address"), Client.id.label("client_id"))
        .where(*client_conditions(sel), reachable(ch), *not_made(sel, ch), *extra)
        for ch in sel.channels
    ]
    return union_all(*parts).subquery("candidates")


def messages(sel: Selection, *extra: ColumnElement[bool]):
    """One row per message after de-duplication: each address once per channel, lowest client id."""
    c = recipients(sel, *extra)
    return (select(c.c.channel, c.c.address, func.min(c.c.client_id).label("client_id"))
            .group_by(c.c.channel, c.c.address).subquery("messages"))


@dataclass(frozen=True)
class Count:
    clients: int
    messages: int
    by_channel: dict[str, int] = field(default_factory=dict)

    def sentence(self) -> str:
        parts = ", ".join(f"{n:,} {ch.capitalize() if ch != 'email' else 'email'}"
                          for ch, n in self.by_channel.items() if n)
        return f"You will send {self.messages:,} messages to {self.clients:,} clients" + (f": {parts}" if parts
                                                                                           else "")

    def to_json(self) -> dict[str, Any]:
        return {"clients": self.clients, "messages": self.messages, "by_channel": dict(self.by_channel)}


def count(session: Session, sel: Selection, *extra: ColumnElement[bool]) -> Count:
    """The exact numbers of clients and messages per channel, as expansion will create them."""
    m = messages(sel, *extra)
    per = dict(session.execute(select(m.c.channel, func.count()).group_by(m.c.channel)).all())
    clients = session.scalar(select(func.count(distinct(m.c.client_id)))) or 0
    by_channel = {ch: int(per.get(ch, 0)) for ch in sel.channels}
    return Count(int(clients), sum(by_channel.values()), by_channel)


def sample(session: Session, sel: Selection, limit: int = 20) -> list[tuple[int, str]]:
    """Some clients of the selection (lowest ids), for the preview's picker."""
    m = messages(sel)
    ids = select(m.c.client_id).distinct().order_by(m.c.client_id).limit(limit).subquery()
    return [(cid, name) for cid, name in session.execute(
        select(Client.id, Client.name).where(Client.id.in_(select(ids.c.client_id))).order_by(Client.id))]


def channels_for(session: Session, sel: Selection, client_id: int) -> list[str]:
    """The channels on which this client would get the broadcast (empty: not in the selection)."""
    m = messages(sel, Client.id == client_id)
    return [ch for ch in session.scalars(select(m.c.channel).where(m.c.client_id == client_id))]


def check_channels(channels: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(c for c in channels if c))
    Selection(Targeting(), chosen, Category.service)  # raises ValueError naming the choices
    return chosen
