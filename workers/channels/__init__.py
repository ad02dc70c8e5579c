"""The channel registry: plain data, one line per channel.

Rules, delivery, the limiter and the admin read :data:`CHANNELS`; none of
them names a channel.  Adding SMS or WhatsApp means one module with a
:class:`Channel` subclass that has a ``from_settings(settings)`` classmethod,
and one :func:`register` call (or line below); nothing else changes.

:func:`build_channels` builds every registered channel, configured or not.
A channel without configuration (no bot token, no SMTP URL) fails each send
with a permanent error naming the missing variable, which an operator sees
in the history, rather than silently dropping the channel at start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vestnik.shared.addresses import install_checks
from vestnik.workers.channels.base import Channel, DeliveryError, Outcome, RenderedMessage
from vestnik.workers.channels.email import EmailChannel
from vestnik.workers.channels.telegram import TelegramChannel
from vestnik.workers.channels.webhook import WebhookChannel

if TYPE_CHECKING:
    from vestnik.shared.config import Settings

__all__ = ["CHANNELS", "Channel", "DeliveryError", "EmailChannel", "Outcome", "RenderedMessage",
           "TelegramChannel", "WebhookChannel", "build_channels", "register"]

CHANNELS: dict[str, type[Channel]] = {
    "telegram": TelegramChannel,
    "email": EmailChannel,
    "webhook": WebhookChannel,
}


def register(cls: type[Channel], *, replace: bool = False) -> type[Channel]:
    """Add a channel class to the registry; usable as a class decorator.

    Registering a second class under a taken name is an error unless
    ``replace=True`` (a typo must not silently swap out a working channel).
    """
    if not (isinstance(cls, type) and issubclass(cls, Channel)):
        raise TypeError(f"{cls!r} is not a Channel subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} has no channel name")
    if not callable(getattr(cls, "from_settings", None)):
        raise TypeError(f"{cls.__name__} needs a from_settings(settings) classmethod")
    existing = CHANNELS.get(name)
    if existing is not None and existing is not cls and not replace:
        raise ValueError(f"channel {name!r} is already registered ({existing.__name__})")
    CHANNELS[name] = cls
    return cls


def build_channels(settings: Settings) -> dict[str, Channel]:
    """One instance of every registered channel, configured from ``settings``; their address checks
    become the ones every save path asks (``shared.addresses.check``)."""
    built = {name: cls.from_settings(settings) for name, cls in CHANNELS.items()}  # type: ignore[attr-defined]
    install_checks({name: channel.check_address for name, channel in built.items()})
    return built
