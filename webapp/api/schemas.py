"""What the API answers: the views build their JSON through these models, and the OpenAPI
document describes them, so the two cannot disagree."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class Problem(BaseModel):
    field: str
    message: str


class Error(BaseModel):
    error: str
    problems: list[Problem] | None = None


class EventAccepted(BaseModel):
    id: int
    status: Literal["accepted"] = "accepted"


class Client(BaseModel):
    id: str
    name: str
    #: E.164, or null
    phone: str | None
    email: str | None
    telegram_chat_id: str | None
    webhook_url: str | None
    locale: str
    timezone: str
    telegram_enabled: bool
    email_enabled: bool
    webhook_enabled: bool
    allow_service: bool
    allow_marketing: bool
    groups: list[str]
    tags: list[str]
    last_active_at: str | None
    #: channel -> why a provider declared the address dead (null: reachable)
    unreachable: dict[str, str | None]
    created_at: str | None
    updated_at: str | None
    forgotten_at: str | None


class Forgotten(BaseModel):
    id: str
    status: Literal["forgotten"] = "forgotten"
    notifications: int
    canceled: int


class Notification(BaseModel):
    id: int
    client: str | None
    channel: str
    event_id: int | None
    event_type: str
    template_code: str
    step: str
    status: str
    attempts: int
    last_error: str | None
    #: what the message carried: {"source": "url"|"file"|"telegram_file_id", "ref", "name", "type", "bytes"}
    attachment: dict[str, Any] | None = None
    delivery_uncertain: bool
    key: str | None
    send_at: str | None
    sent_at: str | None
    created_at: str | None
    updated_at: str | None


class NotificationPage(BaseModel):
    notifications: list[Notification]
    next: int | None
