"""One-click unsubscribe from marketing (RFC 2369 ``List-Unsubscribe``, RFC 8058 one-click).

Every marketing message carries a link with a per-client token:
``<public_url>/unsubscribe/<client id>.<signature>``.  The signature is an
HMAC-SHA256 of the client id under a key derived from ``VESTNIK_SECRET_KEY``,
so a token cannot be guessed for another client and needs no table.  Tokens
do not expire: a link in a year-old email must still work (RFC 8058 asks
that the URL keep working).

Each channel declares how its messages carry the link (``Channel.unsubscribe``):

- Email: ``List-Unsubscribe: <https://.../unsubscribe/TOKEN>`` and
  ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``; the mail client
  POSTs ``List-Unsubscribe=One-Click`` to the URL, without cookies or a CSRF
  token, so the POST endpoint authenticates by the token alone.
- Telegram: an "Unsubscribe" URL button opening the same page, where one
  button POSTs.  A GET never unsubscribes (link scanners fetch links).
- Webhook: ``unsubscribe_url`` in the JSON body, for the receiving system to offer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Protocol

from vestnik.shared import bounds, locales
from vestnik.shared.bounds import BoundsError
from vestnik.shared.config import Settings
from vestnik.shared.errors import TemplateError
from vestnik.shared.messages import Button

_LABEL = {"ru": "Отписаться от рассылок", "uz-latn": "Obunani bekor qilish", "en": "Unsubscribe"}


def _key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), b"vestnik-unsubscribe-v1", hashlib.sha256).digest()


def make_token(secret_key: str, client_id: int) -> str:
    digest = hmac.new(_key(secret_key), str(int(client_id)).encode(), hashlib.sha256).digest()
    return f"{int(client_id)}.{base64.urlsafe_b64encode(digest[:20]).decode().rstrip('=')}"


def read_token(secret_key: str, token: str) -> int | None:
    """The client id of a valid token, else None (constant-time comparison)."""
    head, _, _ = token.partition(".")
    if len(token) > 100 or not secret_key:
        return None
    try:
        client_id = bounds.identifier(head, "token")
    except BoundsError:
        return None
    expected = make_token(secret_key, client_id)
    return client_id if hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace")) else None


def unsubscribe_url(settings: Settings, client_id: int) -> str:
    if not settings.secret_key.strip():
        # Without a key every token would be forgeable: refuse to send marketing instead.
        raise TemplateError("marketing messages need VESTNIK_SECRET_KEY to sign their unsubscribe links")
    return f"{settings.public_url.rstrip('/')}/unsubscribe/{make_token(settings.secret_key, client_id)}"


class Unsubscribing(Protocol):
    """What a channel declares about its way out (``workers.channels.base.Channel.unsubscribe``)."""

    def unsubscribe(self, url: str, locale: str) -> tuple[dict[str, str], tuple[tuple[Button, ...], ...]]: ...


def button_label(locale: str) -> str:
    """The label of an unsubscribe button (channels with buttons)."""
    return locales.pick(_LABEL, locale)


def one_click_headers(url: str) -> dict[str, str]:
    """RFC 2369 + RFC 8058 headers: a mail client unsubscribes with one POST to ``url``."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def marketing_extras(settings: Settings, category: str, channel: Unsubscribing, client_id: int, locale: str
                     ) -> tuple[dict[str, str], tuple[tuple[Button, ...], ...]]:
    """(headers, buttons) a message of this category carries on ``channel`` (a registered channel
    class or instance): marketing gets a way out, in the channel's own form."""
    if category != "marketing":
        return {}, ()
    return channel.unsubscribe(unsubscribe_url(settings, client_id), locale)
