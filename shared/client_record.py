"""A client as a CRM sends it: one schema for the HTTP API, ``vestnik-client``'s
``upsert_clients``, the SQL function ``vestnik_upsert_client`` and the CSV import.

The names are the CSV's (``telegram_enabled``, ``allow_marketing``, ...).  The
rule that keeps clients' own choices: **an absent field is never changed**.
A field given is set; ``null`` clears an address (``email``,
``telegram_chat_id``), the ``phone`` or ``last_active_at``.  So a CRM that only knows names
and emails never resets the preferences a client switched off in the
profile; to change a preference the CRM names it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic import Field as Declared

from vestnik.shared import wire
from vestnik.shared.addresses import ADDRESS_FIELDS, check
from vestnik.shared.events import Boolean, ClientId, Group, Locale, Tag, Timestamp, problems_of

Name = wire.text(200).type
Email = wire.EMAIL.type
Phone = wire.PHONE.type
TelegramChatId = wire.TELEGRAM_CHAT_ID.type
WebhookUrl = wire.WEBHOOK_URL.type
TimeZone = wire.TIMEZONE.type

#: record field -> ``clients`` column, for the consents whose names differ (the per-channel switches
#: and addresses are rows of ``client_addresses``: ``shared/addresses.py``)
PREFERENCE_COLUMNS = {
    "allow_service": "allow_service_notifications",
    "allow_marketing": "allow_marketing_notifications",
}
#: fields ``null`` may clear
CLEARABLE = (*ADDRESS_FIELDS, "phone", "last_active_at")


class ClientFields(BaseModel):
    """What Vestnik keeps about a client; every field is optional (absent = unchanged)."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Declared(None, examples=["Анна Смирнова"])
    email: Email | None = Declared(None, examples=["anna@example.com"], description="null removes it")
    phone: Phone | None = Declared(None, examples=["+79161234567"],
                                   description="E.164 (+ and the country code, digits only); identifies the client "
                                               "to a webhook that names a client by phone (not a channel address); "
                                               "null removes it")
    telegram_chat_id: TelegramChatId | None = Declared(None, examples=["123456789"],
                                                       description="usually set by the bot when the client "
                                                                   "presses Start; null removes it")
    webhook_url: WebhookUrl | None = Declared(None, examples=["https://crm.example.com/vestnik-hook"],
                                              description="notifications POSTed here as signed JSON (the webhook "
                                                          "channel); null removes it")
    locale: Locale = Declared(None, examples=["ru"])
    timezone: TimeZone = Declared(None, examples=["Europe/Moscow"])
    telegram_enabled: Boolean = Declared(None, description="the client's switch for Telegram")
    email_enabled: Boolean = Declared(None, description="the client's switch for email")
    webhook_enabled: Boolean = Declared(None, description="the client's switch for the webhook")
    allow_service: Boolean = Declared(None, description="service notifications (default on)")
    allow_marketing: Boolean = Declared(None, description="marketing consent (default off: opt-in)")
    groups: list[Group] = Declared(None, max_length=200, description="exactly these groups (empty: none)")
    tags: list[Tag] = Declared(None, max_length=200, description="exactly these tags (empty: none)")
    last_active_at: Timestamp | None = Declared(None, examples=["2026-11-20T18:00:00+03:00"],
                                                description="the CRM's last activity of the client")


class ClientRecord(ClientFields):
    """A client with its id (``upsert_clients``' list items)."""

    id: ClientId = Declared(examples=[42, "7f0c1b9e-2d4a-4e55-9b1a-3c1f7c0e9a11"])


_ID = TypeAdapter(ClientId)


def record_problems(client_id: Any, fields: Any) -> list[str]:
    """Every bad field of one client, as ``field: reason``; empty when the record is good."""
    problems: list[str] = []
    try:
        _ID.validate_python(client_id)
    except ValidationError as exc:
        problems += problems_of(exc, "id")
    if not isinstance(fields, dict):
        return problems + ["fields: must be an object"]
    try:
        ClientFields.model_validate(fields)
    except ValidationError as exc:
        problems += problems_of(exc, "", ClientFields)
        return problems
    for field_name, channel in ADDRESS_FIELDS.items():  # each channel's own check (a webhook's target)
        value = fields.get(field_name)
        if isinstance(value, str | int) and not isinstance(value, bool):
            try:
                check(channel, str(value))
            except ValueError as exc:
                problems.append(f"{field_name}: {exc}")
    return problems
