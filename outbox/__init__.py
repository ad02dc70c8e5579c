"""The transactional outbox: ``emit`` for CRM code, the relay that publishes it."""

from vestnik.outbox.emit import emit

__all__ = ["emit"]
