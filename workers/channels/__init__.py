"""The channel registry: plain data, one line per channel.

Adding SMS or WhatsApp means writing one module with a ``Channel`` subclass
and one ``register`` line; nothing else changes (rules, delivery, limits and
the admin read the registry).
"""

from __future__ import annotations

from shared.config import Settings
from workers.channels.base import Channel
from workers.channels.email import EmailChannel
from workers.channels.telegram import TelegramChannel

CHANNELS: dict[str, type[Channel]] = {
    TelegramChannel.name: TelegramChannel,
    EmailChannel.name: EmailChannel,
}


def register(cls: type[Channel]) -> type[Channel]:
    """Add a channel class (usable as a decorator)."""
    CHANNELS[cls.name] = cls
    return cls


def build_channels(settings: Settings) -> dict[str, Channel]:
    """One instance of every registered channel, configured from settings.

    A channel without configuration (no token, no SMTP URL) is still built;
    its sends fail permanently with a message naming the missing variable.
    """
    return {name: cls.from_settings(settings) for name, cls in CHANNELS.items()}  # type: ignore[attr-defined]
