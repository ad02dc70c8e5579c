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
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from vestnik.shared.messages import Attachment, Button, RenderedMessage
from vestnik.workers.limits import ChannelRules

if TYPE_CHECKING:
    from vestnik.shared.config import Settings

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
    #: how a count of its messages reads ("5 Telegram, 3 email"); default: the title
    noun: ClassVar[str] = ""
    #: the client record's field (CSV column, API and ``vestnik_client`` field) holding the address
    #: (``shared/addresses.py`` repeats it for the ground floor); None: the channel has no client address
    address_field: ClassVar[str | None] = None
    #: the record's field holding the client's switch for the channel
    switch_field: ClassVar[str] = ""
    #: addresses compare case-insensitively (email): a broadcast sends once per address
    address_casefold: ClassVar[bool] = False
    #: the client may type the address in the profile (/me); otherwise it comes from the CRM or a binding
    profile_editable: ClassVar[bool] = False
    #: longest text the provider accepts, in characters (None: no limit)
    body_maxlen: ClassVar[int | None] = None

    # What the channel can carry: the composer, the delivery and the template editor ask these.
    #: inline buttons (a rating, an unsubscribe button)
    supports_buttons: ClassVar[bool] = False
    #: groups and channels can be registered as recipients (``chat_facts(ref)`` describes one; workers/chats.py)
    supports_chats: ClassVar[bool] = False
    #: a file sent with the message (a report)
    supports_attachments: ClassVar[bool] = False
    #: the largest file the provider takes with a message (0: the channel carries no files)
    max_attachment_bytes: ClassVar[int] = 0
    #: where an attached file may come from (shared/attachment_refs.py: "url", "file", "telegram_file_id")
    attachment_sources: ClassVar[frozenset[str]] = frozenset()
    #: HTML reaches the recipient as HTML
    supports_html: ClassVar[bool] = False
    #: the template's subject: "required", "optional" or "none" (not rendered, not checked)
    subject_mode: ClassVar[str] = "none"
    #: the message has an HTML part and a plain-text part made from it (email, webhook); otherwise
    #: one text, finished by :meth:`finish_text`
    html_part: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if isinstance(name, str):
            cls.title = cls.__dict__.get("title") or name.capitalize()
            cls.address_label = cls.__dict__.get("address_label") or f"{cls.title} address"
            cls.noun = cls.__dict__.get("noun") or cls.title

    def address_of(self, client: Addressable) -> str | None:
        """The client's address on this channel, or None when it has none."""
        return (client.address(self.name) or "").strip() or None

    @abstractmethod
    def send(self, address: str, message: RenderedMessage) -> str:
        """Send one message; return the provider's id, or raise DeliveryError."""

    def limit_key(self, address: str) -> str | None:
        """The per-recipient rate-limit key (e.g. a chat id), or None."""
        return None

    def check_address(self, value: str) -> str:
        """The address as stored (normalised), or ValueError saying what is wrong with it
        (the caller names the field).  Asked wherever an address is saved."""
        address = (value or "").strip()
        if not address:
            raise ValueError("is empty")
        return address

    @classmethod
    def finish_text(cls, text: str) -> str:
        """The rendered body as the provider takes it (one-text channels: e.g. Telegram's HTML subset)."""
        return text

    @classmethod
    def template_problems(cls, subject: str, body: str) -> list[tuple[str, str]]:
        """This channel's own checks of a template's source, as (field, message)."""
        if cls.subject_mode == "required" and not subject.strip():
            return [("subject", f"{cls.title} needs a subject")]
        return []

    @classmethod
    def rendered_problems(cls, rendered_body: str) -> list[tuple[str, str]]:
        """This channel's checks of a body rendered with example data (its length)."""
        if cls.body_maxlen is None:
            return []
        length = len(cls.finish_text(rendered_body))
        if length <= cls.body_maxlen:
            return []
        return [("body", f"renders to {length} characters with the example data; "
                         f"{cls.title}'s limit is {cls.body_maxlen}")]

    @classmethod
    def unsubscribe(cls, url: str, locale: str) -> tuple[dict[str, str], tuple[tuple[Button, ...], ...]]:
        """How a marketing message carries its way out here, as (headers, buttons); ``url`` is the
        client's one-click unsubscribe link.  Default: a header a receiving system can act on."""
        return {"List-Unsubscribe": f"<{url}>"}, ()

    @classmethod
    def limit_rules(cls, settings: Settings) -> ChannelRules:
        """The provider's limits (``workers/limits.py`` enforces them); default: none."""
        return ChannelRules(overall=())

    @classmethod
    def connections(cls, settings: Settings) -> int:
        """Provider connections (sending threads) per worker process."""
        return 2

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections held between messages."""

    def describe(self) -> dict[str, Any]:
        """Settings safe to show to an admin (never secrets)."""
        return {"name": self.name}
