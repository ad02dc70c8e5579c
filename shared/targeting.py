"""How a broadcast's selection is described: :class:`Targeting`, stored as JSON.

Plain data and its parser, on the ground floor: the ``mass_broadcast`` event's
schema (``shared/events.py``) checks a CRM's targeting with it at emit time.
Turning a selection into SQL, which needs the channels, is
``workers/audience.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from vestnik.shared import bounds, locales
from vestnik.shared.client_ids import client_key
from vestnik.shared.wire import CLIENT_ID

MAX_LIST = 200


@dataclass(frozen=True)
class Targeting:
    """The admin's (or the CRM's) description of the selection; stored as JSON on the broadcast."""

    groups: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    all_tags: bool = False  # every tag, instead of any of them
    locales: tuple[str, ...] = ()
    has_telegram: bool = False
    has_email: bool = False
    active_since: datetime | None = None
    client_list: bool = False  # limited to the broadcast's uploaded ids (broadcast_clients)

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Targeting:
        """From JSON; raises ValueError naming the bad field."""
        raw = dict(raw or {})
        known = {"groups", "tags", "all_tags", "locales", "has_telegram", "has_email", "active_since",
                 "client_list"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"targeting.{unknown[0]}: unknown field (known: {', '.join(sorted(known))})")
        since = raw.get("active_since")
        if since not in (None, ""):
            if not isinstance(since, str) or "T" in since:
                since = bounds.moment(since, "targeting.active_since")  # BoundsError is a ValueError
            else:
                since = datetime.combine(bounds.day(since, "targeting.active_since"), time.min, tzinfo=UTC)
        else:
            since = None
        for flag in ("all_tags", "has_telegram", "has_email", "client_list"):
            if not isinstance(raw.get(flag, False), bool):
                raise ValueError(f"targeting.{flag}: must be true or false")
        return cls(
            groups=_names(raw, "groups", 200), tags=_names(raw, "tags", 100), all_tags=raw.get("all_tags", False),
            # uz_Latn or RU target the stored spelling (shared/locales.py); another code is kept as given
            locales=tuple(dict.fromkeys(locales.match(n) or n for n in _names(raw, "locales", 10))),
            has_telegram=raw.get("has_telegram", False),
            has_email=raw.get("has_email", False), active_since=since, client_list=raw.get("client_list", False),
        )

    def required_addresses(self) -> tuple[str, ...]:
        """The channels on which a client must have an address to be selected."""
        flags = {"telegram": self.has_telegram, "email": self.has_email}
        return tuple(channel for channel, wanted in flags.items() if wanted)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("groups", "tags", "locales"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        for name in ("all_tags", "has_telegram", "has_email", "client_list"):
            if getattr(self, name):
                out[name] = True
        if self.active_since:
            out["active_since"] = self.active_since.isoformat()
        return out

    def describe(self) -> str:
        parts = []
        if self.groups:
            parts.append("groups: " + ", ".join(self.groups))
        if self.tags:
            parts.append(("all tags: " if self.all_tags else "any tag: ") + ", ".join(self.tags))
        if self.locales:
            parts.append("locale: " + ", ".join(self.locales))
        if self.has_telegram:
            parts.append("has Telegram")
        if self.has_email:
            parts.append("has email")
        if self.active_since:
            parts.append(f"active since {self.active_since.date().isoformat()}")
        if self.client_list:
            parts.append("uploaded list of clients")
        return "; ".join(parts) or "all clients"


def _names(raw: Mapping[str, Any], name: str, maxlen: int) -> tuple[str, ...]:
    value = raw.get(name) or []
    if isinstance(value, str):
        value = value.split(";")
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"targeting.{name}: must be a list of names")
    cleaned = tuple(dict.fromkeys(v.strip() for v in value if v.strip()))
    if len(cleaned) > MAX_LIST or any(len(v) > maxlen for v in cleaned):
        raise ValueError(f"targeting.{name}: at most {MAX_LIST} names of at most {maxlen} characters")
    return cleaned


_HEADERS = ("id", "client", "client_id", "clientid", "crm_id")


def parse_client_ids(text: str, limit: int = 1_000_000) -> list[int | str]:
    """An uploaded list: the CRM's ids separated by commas, semicolons, spaces or lines (a CSV's first column).

    An integer id (``42``) comes back as an int, any other id (a UUID) as the string it is
    (``shared/client_ids.py``); the caller resolves them to clients.
    """
    ids: list[int | str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        first = line.split(",")[0].split(";")[0].strip()
        for token in first.split():
            if not CLIENT_ID(token):
                raise ValueError(f"line {lineno}: {token[:30]!r} is not a client id") from None
            if lineno == 1 and token.lower() in _HEADERS:
                continue  # a header
            key = client_key(token)
            ids.append(key if key is not None else token)
    unique = list(dict.fromkeys(ids))
    if len(unique) > limit:
        raise ValueError(f"at most {limit:,} client ids")
    return unique
