"""How a client's per-channel data is named where the outside world sees it.

A client's addresses live in ``client_addresses`` (one row per client and
channel: the address, the client's own switch, whether a provider declared the
address dead).  The CRM's file and API formats name them with flat fields
(``email``, ``telegram_chat_id``, ``telegram_enabled``, ...): this table maps
those wire names to channels.  It is plain data on the ground floor because
``shared/`` cannot import the channel registry (``workers/channels``); each
channel module declares the same names (``address_field``, ``switch_field``) and
``tests/unit/test_channel_registry.py`` holds the two equal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

#: wire field holding the address -> channel
ADDRESS_FIELDS: dict[str, str] = {
    "email": "email",
    "telegram_chat_id": "telegram",
    "webhook_url": "webhook",
}
#: wire field holding the client's switch for the channel -> channel
SWITCH_FIELDS: dict[str, str] = {
    "telegram_enabled": "telegram",
    "email_enabled": "email",
    "webhook_enabled": "webhook",
}
#: channel -> its address field / switch field
ADDRESS_FIELD_OF: dict[str, str] = {channel: field for field, channel in ADDRESS_FIELDS.items()}
SWITCH_FIELD_OF: dict[str, str] = {channel: field for field, channel in SWITCH_FIELDS.items()}
#: every channel a client may have an address on
CHANNELS: tuple[str, ...] = tuple(ADDRESS_FIELDS.values())


# ------------------------------------------------------------------ checking an address when it is saved

#: channel -> the channel's own check (``Channel.check_address``): normalised address or ValueError.
#: Installed by ``workers.channels.build_channels`` from the configured channels (a webhook check
#: needs ``VESTNIK_WEBHOOK_ALLOW_PRIVATE``); until then only blanks are refused here, and each
#: channel checks again before it sends.
_CHECKS: dict[str, Callable[[str], str]] = {}


def install_checks(checks: Mapping[str, Callable[[str], str]]) -> None:
    _CHECKS.update(checks)


def check(channel: str, value: str) -> str:
    """The address as it will be stored; ValueError saying what is wrong (the caller names the field)."""
    address = (value or "").strip()
    if not address:
        raise ValueError("is empty")
    found = _CHECKS.get(channel)
    return found(address) if found is not None else address
