"""The one small interface every delivery channel implements.

A channel knows three things: how to find a client's address on it, how to
send one rendered message to that address, and how to classify what the
provider answered.  It never touches the database: the delivery code records
outcomes (see ``workers/delivery.py``), in exactly one place.

``send`` returns the provider's id for the message, or raises
:class:`DeliveryError` whose ``outcome`` says what the caller must do:

- ``transient``    retry later (timeouts before the request was accepted,
                   5xx, SMTP 4xx);
- ``rate_limited`` the provider asked us to slow down; ``retry_after_s`` says
                   for how long the whole channel must pause.  Not an attempt;
- ``permanent``    never retry; ``address_unreachable`` tells whether the
                   client's address itself is dead (blocked bot, no mailbox);
- ``uncertain``    the provider may have accepted the message (read timeout
                   after the request was sent, connection lost after SMTP's
                   final ".").  Never resent blindly.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

from vestnik.shared.messages import Attachment, Button, RenderedMessage

__all__ = ["Addressable", "Attachment", "Button", "Channel", "DeliveryError", "Outcome", "RenderedMessage"]


class Outcome(str, enum.Enum):
    sent = "sent"
    transient = "transient"
    rate_limited = "rate_limited"
    permanent = "permanent"
    uncertain = "uncertain"


class DeliveryError(Exception):
    """A provider did not accept a message; ``outcome`` says what to do next."""

    def __init__(
        self,
        reason: str,
        *,
        outcome: Outcome,
        retry_after_s: float | None = None,
        address_unreachable: bool = False,
        local: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outcome = outcome
        self.retry_after_s = retry_after_s
        self.address_unreachable = address_unreachable
        #: True when the provider was never called (our own limiter said wait):
        #: not an error to show, and no reason to pause the channel for others.
        self.local = local

    @classmethod
    def transient(cls, reason: str) -> DeliveryError:
        return cls(reason, outcome=Outcome.transient)

    @classmethod
    def permanent(cls, reason: str, *, address_unreachable: bool = False) -> DeliveryError:
        return cls(reason, outcome=Outcome.permanent, address_unreachable=address_unreachable)

    @classmethod
    def rate_limited(cls, reason: str, retry_after_s: float) -> DeliveryError:
        return cls(reason, outcome=Outcome.rate_limited, retry_after_s=retry_after_s)

    @classmethod
    def waiting(cls, wait_s: float) -> DeliveryError:
        """Our limiter has no slot yet: try again in ``wait_s``, without an attempt."""
        return cls(f"waiting {wait_s:.2f}s for a channel slot", outcome=Outcome.rate_limited,
                   retry_after_s=wait_s, local=True)

    @classmethod
    def uncertain(cls, reason: str) -> DeliveryError:
        return cls(reason, outcome=Outcome.uncertain)


class Addressable(Protocol):
    """What channels read of a client (``vestnik.shared.models.Client`` has it)."""

    id: int

    def address(self, channel: str) -> str | None: ...


class Channel(ABC):
    """Base class of every channel; subclasses are registered in ``channels/__init__``."""

    #: registry name, stored in ``notifications.channel`` and ``client_addresses.channel``
    name: ClassVar[str]
    #: how people see the channel's name (admin, profile); default: the name capitalised
    title: ClassVar[str] = ""
    #: how the admin and the profile label the client's address on this channel
    address_label: ClassVar[str] = ""
    #: the client preference column that switches this channel on and off
    preference_field: ClassVar[str]
    #: longest text the provider accepts, in characters (None: no limit)
    body_maxlen: ClassVar[int | None] = None
    #: the client column holding the address, for set-based queries (broadcast targeting)
    address_field: ClassVar[str | None] = None
    #: addresses compare case-insensitively (email): a broadcast sends once per address
    address_casefold: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if isinstance(name, str):
            cls.title = cls.__dict__.get("title") or name.capitalize()
            cls.address_label = cls.__dict__.get("address_label") or f"{cls.title} address"

    def address_of(self, client: Addressable) -> str | None:
        """The client's address on this channel, or None when it has none."""
        return (client.address(self.name) or "").strip() or None

    @abstractmethod
    def send(self, address: str, message: RenderedMessage) -> str:
        """Send one message; return the provider's id, or raise DeliveryError."""

    def limit_key(self, address: str) -> str | None:
        """The per-recipient rate-limit key (e.g. a chat id), or None."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections held between messages."""

    def describe(self) -> dict[str, Any]:
        """Settings safe to show to an admin (never secrets)."""
        return {"name": self.name}
