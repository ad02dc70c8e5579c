"""``vestnik clients import FILE.csv``: merge clients by id; report every bad field by line.

Only ``id`` is required: the CRM's id, an integer or a string of up to 64
characters (a UUID; ``shared/client_ids.py``), so one file may mix both.  The other columns are ``name, phone, email,
telegram_chat_id, webhook_url, locale, timezone``, the preferences
``telegram_enabled, email_enabled, webhook_enabled, allow_service,
allow_marketing``, the broadcast targeting
columns ``groups`` and ``tags`` (names separated by ``;``) and
``last_active_at`` (ISO 8601).  A ``phone`` is written as people write it
(``+7 (916) 123-45-67``) and stored in E.164 (``+79161234567``,
``bounds.phone``); a national form (``8 916 ...``) is refused by line.  An
unknown column is refused by name, so a typo (``emial``) cannot pass for an import.
Each address column is checked by its channel (``Channel.check_address``, through
``shared.addresses.check``), the check the admin and the profile ask: the process
builds its channels first (``build_channels``), as the CLI and the web app do.

**The import merges.**  For a client Vestnik already knows, a value changes
only when the file names it: an absent column or an empty cell leaves the
stored value alone.  That is what keeps the choices clients make themselves
(preferences switched off in the profile, a marketing consent withdrawn, a
Telegram chat connected through the bot, a language) from being reset by the
CRM's next export.  A new client gets the defaults for what the file leaves out
(every channel on, service messages on, marketing off: consent is opt-in).
``groups`` and ``tags``, when their column is present, become exactly the
cell's names (an empty cell clears them).

A bad row is reported with its line number and every bad field, and skipped;
the good rows are imported in the caller's transaction.  Files may be
comma- or semicolon-separated (as spreadsheets in Russian locales save them)
and UTF-8 or Windows-1251 (:func:`decode_csv`).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vestnik.shared import bounds, client_ids, locales
from vestnik.shared.addresses import ADDRESS_FIELDS, SWITCH_FIELDS
from vestnik.shared.addresses import check as check_address
from vestnik.shared.bounds import BoundsError
from vestnik.shared.models import Client, ClientGroup, ClientTag, utcnow
from vestnik.shared.wire import CLIENT_ID

REQUIRED = ("id",)
CONTACT = ("name", "phone", "email", "telegram_chat_id", "webhook_url", "locale", "timezone")
PREFERENCES = {
    **{field: field for field in SWITCH_FIELDS},  # a channel's switch: a row of client_addresses
    "allow_service": "allow_service_notifications",
    "allow_marketing": "allow_marketing_notifications",
}
LABELS = {"groups": 200, "tags": 100}  # column -> longest name
KNOWN_COLUMNS = (*REQUIRED, *CONTACT, *PREFERENCES, *LABELS, "last_active_at")
CHUNK = 1000

_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # no text file has these
_TRUE = {"1", "true", "yes", "y", "on", "да"}
_FALSE = {"0", "false", "no", "n", "off", "нет"}


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, "column: reason")

    @property
    def rejected_lines(self) -> int:
        return len({line for line, _ in self.errors})


class RowError(ValueError):
    """A row with one or more bad fields; ``problems`` holds one "column: reason" each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def decode_csv(data: bytes) -> tuple[str, str | None]:
    """The file's text and, when it was not UTF-8, a note saying how it was read.

    A spreadsheet saved by Excel in a Russian locale is Windows-1251; its bytes
    are rarely valid UTF-8, so a failed UTF-8 decode with a Cyrillic-looking
    cp1251 reading is taken as cp1251.  Anything else, and any text with control
    characters (a binary file), is refused naming the first bad byte's offset.
    """
    control = _CONTROL.search(data)
    if control:
        raise ValueError(f"not a text file: control byte 0x{data[control.start()]:02x} at offset {control.start()}")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        utf8_error = exc
    text = data.decode("cp1251", errors="replace")
    letters = [ch for ch in text if ch.isalpha()]
    if "\ufffd" not in text and letters and sum("\u0400" <= ch <= "\u04ff" for ch in letters) >= len(letters) * 0.2:
        return text, "the file is not UTF-8; read as Windows-1251 (cp1251)"
    raise ValueError(f"the file is neither UTF-8 nor Windows-1251 text: byte 0x{data[utf8_error.start]:02x} "
                     f"at offset {utf8_error.start} is not valid UTF-8; save it as 'CSV UTF-8'")


def _parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"expected yes/no or true/false, got {value[:40]!r}")


def parse_row(row: dict[str, str | None]) -> dict[str, Any]:
    """The values one CSV row names (non-empty cells), validated.

    Raises :class:`RowError` listing every bad field.  A column that is absent
    or empty is simply not in the result: the caller keeps what it has.
    """
    out: dict[str, Any] = {}
    problems: list[str] = []

    def cell(column: str) -> str:
        return (row.get(column) or "").strip()

    for column, value in row.items():
        if isinstance(value, str):  # a NUL or a lone surrogate cannot be stored: named, the row refused
            try:
                bounds.text(value, str(column)[:40], max_chars=10_000, controls=True, strip=False)
            except BoundsError as exc:
                problems.append(str(exc))
    if problems:
        raise RowError(problems)
    raw_id = cell("id")
    crm_id = client_ids.crm_id_of(raw_id)  # "42" is the client 42; "042" and a UUID are string ids
    if crm_id is None:
        problems.append(f"id: {CLIENT_ID.error}, got {raw_id[:70]!r}")
    else:
        out["id"] = crm_id
    if name := cell("name"):
        if len(name) > 200:
            problems.append(f"name: longer than 200 characters ({len(name)})")
        else:
            out["name"] = name
    if phone := cell("phone"):  # an empty cell, like an absent column, never clears a stored phone
        try:
            out["phone"] = bounds.phone(phone, "phone")
        except BoundsError as exc:
            problems.append(str(exc))
    for column, channel in ADDRESS_FIELDS.items():  # each channel's own check, as the admin and the profile ask it
        if value := cell(column):
            try:
                out[column] = check_address(channel, value)
            except ValueError as exc:
                problems.append(f"{column}: {exc}")
    if locale := cell("locale"):
        try:  # uz_Latn, UZ-LATN, ru-RU: written the way Vestnik stores them (shared/locales.py)
            out["locale"] = locales.normalize(locale)
        except locales.LocaleError as exc:
            problems.append(str(exc))
    if tz := cell("timezone"):
        try:
            ZoneInfo(tz)
            out["timezone"] = tz
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"timezone: unknown time zone {tz[:64]!r} (expected e.g. Europe/Moscow)")
    for column, attr in PREFERENCES.items():
        if value := cell(column):
            try:
                out[attr] = _parse_bool(value)
            except ValueError as exc:
                problems.append(f"{column}: {exc}")
    for column, maxlen in LABELS.items():
        if column in row:  # absent column: leave the client's memberships alone
            names = list(dict.fromkeys(n.strip() for n in cell(column).split(";") if n.strip()))
            if any(len(n) > maxlen for n in names):
                problems.append(f"{column}: a name longer than {maxlen} characters")
            else:
                out[f"_{column}"] = names
    if active := cell("last_active_at"):
        try:
            parsed = datetime.fromisoformat(active)
            parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            out["last_active_at"] = bounds.moment(parsed, "last_active_at")
        except BoundsError as exc:
            problems.append(str(exc))
        except ValueError:
            problems.append(f"last_active_at: not an ISO 8601 time: {active[:40]!r}")
    if problems:
        raise RowError(problems)
    return out


def _reader(stream: TextIO) -> csv.DictReader:
    """A reader for comma- or semicolon-separated text: the header line decides."""
    first = stream.readline()
    delimiter = ";" if first.count(";") > first.count(",") else ","
    rest = stream.read()
    return csv.DictReader(io.StringIO(first + rest), delimiter=delimiter)


def import_clients(session: Session, stream: TextIO, *, default_timezone: str = "Europe/Moscow",
                   progress: Callable[[int], None] | None = None) -> ImportReport:
    """Merge the clients of a CSV text stream into the session (the caller commits).

    ``progress`` is called with the number of rows read so far after each
    chunk of rows is written, for a long file's progress line.
    """
    report = ImportReport()
    reader = _reader(stream)
    header = [(h or "").strip().lstrip("\ufeff").lower() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in KNOWN_COLUMNS]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(repr(c) for c in unknown)} "
                         f"(known: {', '.join(KNOWN_COLUMNS)})")
        report.errors.append((1, "header: " + "; ".join(parts)))
        return report
    reader.fieldnames = header
    parsed: dict[str, dict[str, Any]] = {}
    rows_read = 0
    for row in reader:
        rows_read += 1
        line = reader.line_num
        if None in row:  # more cells than the header has columns
            report.errors.append((line, f"row: {len(header) + len(row[None])} cells for {len(header)} columns"))
            continue
        try:
            values = parse_row(row)
        except RowError as exc:
            report.errors.extend((line, problem) for problem in exc.problems)
            continue
        parsed.pop(values["id"], None)
        parsed[values["id"]] = values  # a later row for the same id wins
        if len(parsed) >= CHUNK:
            _merge(session, parsed.values(), report, default_timezone)
            parsed.clear()
            if progress:
                progress(rows_read)
    _merge(session, parsed.values(), report, default_timezone)
    if progress:
        progress(rows_read)
    return report


def _merge(session: Session, rows: Iterable[dict[str, Any]], report: ImportReport, default_timezone: str) -> None:
    """One chunk of parsed rows (``id``: the CRM id as ``crm_id`` text) merged into the clients."""
    chunk = list(rows)
    if not chunk:
        return
    keys = {crm_id: key for crm_id in (r["id"] for r in chunk)
            if (key := client_ids.client_key(crm_id)) is not None}
    keys.update(client_ids.lookup(session, [r["id"] for r in chunk]))
    existing = {c.id: c for c in session.scalars(select(Client).where(Client.id.in_(list(keys.values()))))}
    labels = {kind: {v["id"]: v.pop(f"_{kind}") for v in chunk if f"_{kind}" in v} for kind in LABELS}
    for values in chunk:
        crm_id = values.pop("id")
        key = keys.get(crm_id)
        client = existing.get(key) if key is not None else None
        created = client is None
        if created:
            if key is None:  # a string id no client has yet (shared/client_ids.py)
                key = keys[crm_id] = client_ids.new_key(session)
            client = Client(id=key, crm_id=crm_id, timezone=default_timezone)
            session.add(client)
        for attr, value in values.items():
            if attr in ADDRESS_FIELDS:  # a new address gets a fresh chance (Client.set_address)
                client.set_address(ADDRESS_FIELDS[attr], value)
            elif attr in SWITCH_FIELDS:
                client.set_channel_enabled(SWITCH_FIELDS[attr], value)
            else:
                setattr(client, attr, value)
        client.updated_at = utcnow()
        if created:
            report.created += 1
        else:
            report.updated += 1
    session.flush()
    for kind, model, column in (("groups", ClientGroup, ClientGroup.name), ("tags", ClientTag, ClientTag.tag)):
        if labels[kind]:
            members = {keys[crm_id]: names for crm_id, names in labels[kind].items()}
            session.execute(delete(model).where(model.client_id.in_(list(members))))
            session.add_all([model(client_id=key, **{column.key: name})
                             for key, names in members.items() for name in names])
    session.flush()
