"""``vestnik clients import FILE.csv``: upsert clients by id; report bad rows by line.

Required columns: ``id,name,email,telegram_chat_id,locale,timezone``.
Optional preference columns: ``telegram_enabled,email_enabled,allow_service,
allow_marketing`` (default true, except marketing: false — consent is opt-in).
Optional broadcast targeting columns: ``groups`` and ``tags`` (names separated
by ``;``; when the column is present, a client's groups or tags become exactly
these) and ``last_active_at`` (ISO 8601).
A bad row is reported with its line number and skipped; the good rows are
imported in one transaction.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vestnik.shared.models import Client, ClientGroup, ClientTag, utcnow

REQUIRED = ("id", "name", "email", "telegram_chat_id", "locale", "timezone")
PREFERENCES = {
    "telegram_enabled": ("notifications_telegram_enabled", True),
    "email_enabled": ("notifications_email_enabled", True),
    "allow_service": ("allow_service_notifications", True),
    "allow_marketing": ("allow_marketing_notifications", False),
}
_EMAIL = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+$")
_TRUE = {"1", "true", "yes", "y", "on", "да"}
_FALSE = {"0", "false", "no", "n", "off", "нет"}


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


def _parse_bool(value: str, default: bool) -> bool:
    v = value.strip().lower()
    if v == "":
        return default
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"expected true/false, got {value!r}")


def parse_row(row: dict[str, str]) -> dict[str, Any]:
    """Validate one CSV row; raise ValueError naming the column."""
    out: dict[str, Any] = {}
    raw_id = (row.get("id") or "").strip()
    if not raw_id.isdigit() or int(raw_id) <= 0:
        raise ValueError(f"id: must be a positive integer, got {raw_id!r}")
    out["id"] = int(raw_id)
    out["name"] = (row.get("name") or "").strip()[:200]
    email = (row.get("email") or "").strip()
    if email and not _EMAIL.match(email):
        raise ValueError(f"email: not a single valid address: {email[:80]!r}")
    out["email"] = email or None
    chat = (row.get("telegram_chat_id") or "").strip()
    if chat and not re.fullmatch(r"-?\d{1,20}", chat):
        raise ValueError(f"telegram_chat_id: must be a number, got {chat[:40]!r}")
    out["telegram_chat_id"] = chat or None
    locale = (row.get("locale") or "ru").strip().lower() or "ru"
    if not re.fullmatch(r"[a-z]{2}(_[a-z]{2})?", locale):
        raise ValueError(f"locale: expected a language code like ru or en, got {locale!r}")
    out["locale"] = locale
    tz = (row.get("timezone") or "Europe/Moscow").strip() or "Europe/Moscow"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone: unknown time zone {tz!r}") from None
    out["timezone"] = tz
    for column, (attr, default) in PREFERENCES.items():
        try:
            out[attr] = _parse_bool(row.get(column) or "", default)
        except ValueError as exc:
            raise ValueError(f"{column}: {exc}") from None
    for column, maxlen in (("groups", 200), ("tags", 100)):
        if column in row:  # absent column: leave the client's memberships alone
            names = list(dict.fromkeys(n.strip() for n in (row.get(column) or "").split(";") if n.strip()))
            if any(len(n) > maxlen for n in names):
                raise ValueError(f"{column}: a name longer than {maxlen} characters")
            out[f"_{column}"] = names
    active = (row.get("last_active_at") or "").strip()
    if active:
        try:
            parsed = datetime.fromisoformat(active)
        except ValueError:
            raise ValueError(f"last_active_at: not an ISO 8601 time: {active[:40]!r}") from None
        out["last_active_at"] = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return out


def import_clients(session: Session, stream: TextIO) -> ImportReport:
    report = ImportReport()
    reader = csv.DictReader(stream)
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        report.errors.append((1, f"header: missing column(s) {', '.join(missing)}"))
        return report
    reader.fieldnames = header
    parsed: dict[int, tuple[int, dict[str, Any]]] = {}
    for row in reader:
        line = reader.line_num
        try:
            values = parse_row(row)
        except ValueError as exc:
            report.errors.append((line, str(exc)))
            continue
        parsed[values["id"]] = (line, values)  # a later row for the same id wins
    _upsert(session, [v for _, v in parsed.values()], report)
    return report


def _upsert(session: Session, rows: Iterable[dict[str, Any]], report: ImportReport) -> None:
    rows = list(rows)
    for start in range(0, len(rows), 1000):
        chunk = rows[start : start + 1000]
        existing = {
            c.id: c for c in session.scalars(select(Client).where(Client.id.in_([r["id"] for r in chunk])))
        }
        labels = {kind: {v["id"]: v.pop(f"_{kind}") for v in chunk if f"_{kind}" in v} for kind in ("groups", "tags")}
        for values in chunk:
            client = existing.get(values["id"])
            if client is None:
                session.add(Client(**values))
                report.created += 1
                continue
            for attr, value in values.items():
                if attr == "telegram_chat_id" and value != client.telegram_chat_id:
                    client.telegram_unreachable_reason = None  # a new address gets a fresh chance
                if attr == "email" and value != client.email:
                    client.email_unreachable_reason = None
                setattr(client, attr, value)
            client.updated_at = utcnow()
            report.updated += 1
        session.flush()
        for kind, model, column in (("groups", ClientGroup, ClientGroup.name), ("tags", ClientTag, ClientTag.tag)):
            if labels[kind]:
                session.execute(delete(model).where(model.client_id.in_(list(labels[kind]))))
                session.add_all([model(client_id=cid, **{column.key: name})
                                 for cid, names in labels[kind].items() for name in names])
        session.flush()
