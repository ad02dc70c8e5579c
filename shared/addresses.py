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

#: wire field holding the address -> channel
ADDRESS_FIELDS: dict[str, str] = {
    "email": "email",
    "telegram_chat_id": "telegram",
}
#: wire field holding the client's switch for the channel -> channel
SWITCH_FIELDS: dict[str, str] = {
    "telegram_enabled": "telegram",
    "email_enabled": "email",
}
#: channel -> its address field / switch field
ADDRESS_FIELD_OF: dict[str, str] = {channel: field for field, channel in ADDRESS_FIELDS.items()}
SWITCH_FIELD_OF: dict[str, str] = {channel: field for field, channel in SWITCH_FIELDS.items()}
#: every channel a client may have an address on
CHANNELS: tuple[str, ...] = tuple(ADDRESS_FIELDS.values())
