"""The audit log: who changed what, written in the caller's transaction (committed with the change)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from vestnik.shared.models import AuditLog


def record(session: Session, actor: str, action: str, object_type: str, object_id: Any,
           details: dict[str, Any] | None = None) -> None:
    """Add one audit row; ``actor`` is "admin:<id>", "client:<id>", "cli" or "system"."""
    session.add(AuditLog(actor=actor, action=action, object_type=object_type,
                         object_id=None if object_id is None else str(object_id), details=details or {}))


def client_action(session: Session, client_id: int, action: str, details: dict[str, Any] | None = None) -> None:
    """A client changed something of their own (profile page, bot command)."""
    record(session, f"client:{client_id}", action, "client", client_id, details)
