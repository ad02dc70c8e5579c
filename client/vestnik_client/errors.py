"""What can go wrong before anything is written; each names the thing."""

from __future__ import annotations


class VestnikClientError(Exception):
    """Base of every error raised by vestnik_client."""


class InvalidEvent(VestnikClientError, ValueError):
    """The event does not match its declared schema; ``problems`` has one "field: reason" per bad field."""

    def __init__(self, event_type: object, problems: list[str]) -> None:
        self.event_type = event_type
        self.problems = list(problems)
        super().__init__(f"invalid {event_type!r} event: " + "; ".join(self.problems))


class UnknownEventType(InvalidEvent):
    """No such event type in the registry; ``close`` lists the names it resembles."""

    def __init__(self, event_type: object, close: list[str]) -> None:
        self.close = list(close)
        hint = f" (did you mean {' or '.join(repr(c) for c in self.close)}?)" if self.close else ""
        super().__init__(event_type, [f"unknown event type {event_type!r}{hint}"])


class InvalidClient(VestnikClientError, ValueError):
    """One or more client records are bad; ``problems`` has one "clients[i].field: reason" each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid clients: " + "; ".join(self.problems))


class UnsupportedConnection(VestnikClientError, TypeError):
    """``conn`` is not something a transaction can be joined through (an Engine, a pool, a cursor...)."""


class NotInTransaction(VestnikClientError):
    """``conn`` is in autocommit mode outside a transaction: the event would be committed on its own."""
