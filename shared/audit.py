"""The audit log: who changed what, written in the caller's transaction (committed with the change)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from vestnik.shared import client_ids
from vestnik.shared.models import AuditLog


def record(session: Session, actor: str, action: str, object_type: str, object_id: Any,
           details: dict[str, Any] | None = None) -> None:
    """Add one audit row; ``actor`` is "admin:<id>", "client:<id>", "cli" or "system"."""
    session.add(AuditLog(actor=actor, action=action, object_type=object_type,
                         object_id=None if object_id is None else str(object_id), details=details or {}))


def client_action(session: Session, client_id: int, action: str, details: dict[str, Any] | None = None) -> None:
    """A client (row key ``client_id``) changed something of their own (profile page, bot command); the
    audit names the client by the CRM's id (shared/client_ids.py)."""
    shown = client_ids.crm_ids(session, [client_id]).get(client_id, str(client_id))
    record(session, f"client:{shown}", action, "client", shown, details)
