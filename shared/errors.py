"""Vestnik's named errors, in one place.  Each docstring is its default message."""

from __future__ import annotations


class VestnikError(Exception):
    """Vestnik error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(VestnikError):
    """A configuration variable has a bad value."""

    def __init__(self, variable: str, why: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {why}")


class EventValidationError(VestnikError):
    """The event does not match its declared schema."""

    def __init__(self, event_type: str, problems: list[str]) -> None:
        self.event_type = event_type
        self.problems = problems
        super().__init__(f"invalid {event_type!r} event: " + "; ".join(problems))


class UnknownEventType(EventValidationError):
    """The event type is not declared."""

    def __init__(self, event_type: str, close: list[str] | None = None) -> None:
        self.close = close or []
        hint = f" (did you mean {' or '.join(repr(c) for c in self.close)}?)" if self.close else ""
        super().__init__(event_type, [f"unknown event type {event_type!r}{hint}"])


class TemplateError(VestnikError):
    """A template could not be rendered."""


class TemplateNotFound(TemplateError):
    """No active template for this code, channel and locale."""
