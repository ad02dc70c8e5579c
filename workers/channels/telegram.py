"""Telegram through the Bot API (``requests``, HTML parse mode).

Limits as class data (Bots FAQ): 4096 characters a message, 1024 a caption.
Longer texts are split at line breaks; the buttons go on the last part.
Classification of the Bot API's answers is in one table below; the bot token
is in every URL, so no exception text from ``requests`` is ever passed on.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import requests

from shared.config import Settings
from workers.channels.base import Addressable, Channel, DeliveryError, RenderedMessage

#: Bot API descriptions that mean the address itself is dead (mark it unreachable).
UNREACHABLE = (
    "bot was blocked by the user",
    "user is deactivated",
    "chat not found",
    "bot was kicked",
    "bot can't initiate conversation",
    "have no rights to send a message",
    "peer_id_invalid",
)


def split_text(text: str, limit: int) -> list[str]:
    """Split at line breaks (then hard) so each part fits ``limit`` characters."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            parts.append(current)
            current = line
        else:
            current = candidate
    if current:
        parts.append(current)
    return parts


class TelegramChannel(Channel):
    name: ClassVar[str] = "telegram"
    preference_field: ClassVar[str] = "notifications_telegram_enabled"
    body_maxlen: ClassVar[int] = 4096
    caption_maxlen: ClassVar[int] = 1024

    def __init__(self, *, token: str, api_base: str = "https://api.telegram.org", connect_timeout_s: float = 5,
                 read_timeout_s: float = 15, session: requests.Session | None = None) -> None:
        self._token = token
        self.api_base = api_base.rstrip("/")
        self.timeouts = (connect_timeout_s, read_timeout_s)
        self.http = session or requests.Session()

    @classmethod
    def from_settings(cls, settings: Settings) -> TelegramChannel:
        return cls(token=settings.telegram_token, api_base=settings.telegram_api_base,
                   connect_timeout_s=settings.telegram_connect_timeout_s,
                   read_timeout_s=settings.telegram_read_timeout_s)

    def address_of(self, client: Addressable) -> str | None:
        return client.telegram_chat_id or None

    def limit_key(self, address: str) -> str | None:
        return address

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "api_base": self.api_base, "configured": bool(self._token)}

    # ------------------------------------------------------------ sending

    def send(self, address: str, message: RenderedMessage) -> str:
        markup = None
        if message.buttons:
            markup = {"inline_keyboard": [[
                {"text": b.text, **({"url": b.url} if b.url else {"callback_data": b.callback_data or b.text})}
                for b in row] for row in message.buttons]}
        if message.attachment is not None:
            if len(message.text) <= self.caption_maxlen:
                return self._document(address, message, caption=message.text, markup=markup)
            first = self._text(address, message.text, None)
            self._document(address, message, caption=None, markup=markup)
            return first
        return self._text(address, message.text, markup)

    def _text(self, chat: str, text: str, markup: dict | None) -> str:
        parts = split_text(text, self.body_maxlen)
        first = ""
        for i, part in enumerate(parts):
            params: dict[str, Any] = {"chat_id": chat, "text": part, "parse_mode": "HTML",
                                      "link_preview_options": {"is_disabled": True}}
            if markup and i == len(parts) - 1:
                params["reply_markup"] = markup
            result = self.call("sendMessage", json_body=params)
            first = first or str(result.get("message_id", ""))
        return first

    def _document(self, chat: str, message: RenderedMessage, *, caption: str | None, markup: dict | None) -> str:
        att = message.attachment
        assert att is not None
        data: dict[str, Any] = {"chat_id": chat}
        if caption:
            data.update(caption=caption, parse_mode="HTML")
        if markup:
            data["reply_markup"] = json.dumps(markup)
        result = self.call("sendDocument", data=data, files={"document": (att.filename, att.content, att.mime_type)})
        return str(result.get("message_id", ""))

    # ------------------------------------------------------------ the Bot API

    def call(self, method: str, *, json_body: dict | None = None, data: dict | None = None,
             files: dict | None = None) -> Any:
        """One Bot API call: the result, or DeliveryError classified from the answer."""
        if not self._token:
            raise DeliveryError.permanent("Telegram is not configured (VESTNIK_TELEGRAM_TOKEN is empty)")
        url = f"{self.api_base}/bot{self._token}/{method}"
        try:
            resp = self.http.post(url, json=json_body, data=data, files=files, timeout=self.timeouts)
        except requests.ConnectTimeout:
            raise DeliveryError.transient(f"{method}: connect timeout") from None
        except requests.ReadTimeout:
            # The request went out; Telegram may have delivered it (python-telegram-bot #1045).
            raise DeliveryError.uncertain(f"{method}: no answer within {self.timeouts[1]}s") from None
        except requests.ConnectionError as exc:
            # Connection refused or reset before an answer: requests' text holds the URL (and token).
            raise DeliveryError.transient(f"{method}: connection error ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise DeliveryError.transient(f"{method}: {type(exc).__name__}") from None
        return self._classify(method, resp)

    @staticmethod
    def _classify(method: str, resp: requests.Response) -> Any:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("ok") is True:
            return body.get("result") or {}
        status = resp.status_code
        description = str(body.get("description", "")) if isinstance(body, dict) else ""
        params = body.get("parameters") or {} if isinstance(body, dict) else {}
        reason = f"{status} {description}".strip() if description else f"HTTP {status}"
        if status == 429:
            return_after = float(params.get("retry_after") or 1)
            raise DeliveryError.rate_limited(reason, return_after)
        if status >= 500 or body is None:
            raise DeliveryError.transient(reason)
        if status == 401:
            raise DeliveryError.permanent(f"{reason}: the bot token is wrong or revoked")
        if "migrate_to_chat_id" in params:
            raise DeliveryError.permanent(f"{reason}: the group moved to chat {params['migrate_to_chat_id']}")
        lowered = description.lower()
        unreachable = status in (400, 403) and any(marker in lowered for marker in UNREACHABLE)
        raise DeliveryError.permanent(reason, address_unreachable=unreachable)

    def close(self) -> None:
        self.http.close()
