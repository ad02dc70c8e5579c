"""The files messages carry: fetched from a URL, read from the admin's uploads, or named by a Telegram file_id.

Where a row's file comes from (delivery asks :func:`reference_of`): a rule step's payload field
holding a URL (``Step.attachment_field``: an invoice's PDF, a finished report), else the payload's
``attachment`` reference (``shared/attachment_refs.py``): set by a broadcast, a ``mass_broadcast``
event, or a rule step's attachment in the admin (written into the rows when the event is handled).

The same limits hold for Telegram (a document) and email (a MIME part): each channel's size limit
(``Channel.max_attachment_bytes``), types a person opens (:data:`ALLOWED_TYPES`: an HTML answer is usually a login
or error page, not the file), and the sources a channel can send (``Channel.attachment_sources``:
a Telegram file_id is Telegram's only).  They are checked where a reference is saved
(:func:`check_reference`: the broadcast form, the rules page, a ``mass_broadcast`` event), where a
file is uploaded (:func:`check_upload`), and again when the message is sent (:func:`resolve`), where
a failure is that row's, with a reason that says so.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from vestnik.shared.attachment_refs import (
    ATTACHMENT_KEY,
    FILE,
    SOURCE_NAMES,
    TELEGRAM_FILE_ID,
    URL,
    AttachmentRef,
    parse,
)
from vestnik.shared.models import StoredFile
from vestnik.workers.channels.base import Attachment, DeliveryError

MB = 1024 * 1024
#: Types a person opens; anything else (text/html, executables) is refused by name.
ALLOWED_TYPES = frozenset({
    "application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp", "text/csv", "text/plain",
    "application/zip", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation", "application/vnd.ms-excel",
    "application/msword", "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.text", "application/octet-stream",
})


def fetch_attachment(url: str, filename: str | None = None, *, channel: Any, timeout_s: float = 30) -> Attachment:
    """Download ``url`` for ``channel`` (a Channel or its class); a network failure is transient, a 4xx,
    a file over the channel's limit or of a type not in :data:`ALLOWED_TYPES` permanent."""
    max_bytes = channel.max_attachment_bytes
    try:
        with requests.get(url, timeout=timeout_s, stream=True) as resp:
            if 400 <= resp.status_code < 500:
                raise DeliveryError.permanent(f"attachment: HTTP {resp.status_code} for the file")
            if resp.status_code >= 500:
                raise DeliveryError.transient(f"attachment: HTTP {resp.status_code} for the file")
            mime = (resp.headers.get("Content-Type") or "application/octet-stream").split(";")[0].strip().lower()
            if mime not in ALLOWED_TYPES:
                raise DeliveryError.permanent(f"attachment: the URL answered {mime}, not a file to attach "
                                              "(PDF, images, office documents, CSV, text, ZIP)")
            chunks, size = [], 0
            for chunk in resp.iter_content(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise DeliveryError.permanent(f"attachment: larger than {max_bytes // MB} MB, the "
                                                  f"{channel.name} limit")
                chunks.append(chunk)
    except requests.RequestException as exc:
        raise DeliveryError.transient(f"attachment: {type(exc).__name__}") from None
    name = filename or os.path.basename(urllib.parse.urlsplit(url).path) or "file"
    return Attachment(filename=name[:200], content=b"".join(chunks), mime_type=mime)


# ------------------------------------------------------------------ uploads (the admin's Files)

def upload_limit() -> tuple[int, str]:
    """The largest file an admin may upload and the channel whose limit that is: the lowest limit of the
    channels that can send an uploaded file, so one file goes by every one of them (email's 18 MB today)."""
    lowest = min(file_channels(), key=lambda cls: cls.max_attachment_bytes)
    return lowest.max_attachment_bytes, lowest.name


def file_channels() -> list[Any]:
    """The registered channel classes that can send an uploaded file (``file:ID``)."""
    from vestnik.workers.channels import CHANNELS

    return [cls for cls in CHANNELS.values() if cls.supports_attachments and FILE in cls.attachment_sources]
#: what a file of each type starts with; a file whose bytes do not match its name's type is refused
_MAGIC: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
    "application/zip": (b"PK\x03\x04",),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (b"PK\x03\x04",),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (b"PK\x03\x04",),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": (b"PK\x03\x04",),
    "application/vnd.oasis.opendocument.spreadsheet": (b"PK\x03\x04",),
    "application/vnd.oasis.opendocument.text": (b"PK\x03\x04",),
    "application/vnd.ms-excel": (b"\xd0\xcf\x11\xe0",),
    "application/msword": (b"\xd0\xcf\x11\xe0",),
}


def size_text(n: int) -> str:
    return f"{n / MB:.1f} MB" if n >= MB else f"{max(1, n // 1024)} KB"


def check_upload(filename: str, content: bytes) -> tuple[str, str]:
    """(the name to keep, its type) for an uploaded file; ValueError saying what is wrong."""
    name = os.path.basename((filename or "").replace("\\", "/")).strip()
    if not name or len(name) > 200 or any(ord(ch) < 32 for ch in name):
        raise ValueError("the file needs a name of 1 to 200 characters")
    if not content:
        raise ValueError(f"{name} is empty")
    most, channel = upload_limit()
    if len(content) > most:
        raise ValueError(f"{name} is {size_text(len(content))}; at most {size_text(most)} (the {channel} limit, "
                         "so that the file goes by every channel alike)")
    mime = (mimetypes.guess_type(name, strict=False)[0] or "").lower()
    if mime not in ALLOWED_TYPES or mime == "application/octet-stream":
        raise ValueError(f"{name}: {mime or 'an unknown type'} is not a file to attach; allowed: PDF, PNG, JPEG, "
                         "GIF, WebP, CSV, text, ZIP, Word, Excel, PowerPoint, OpenDocument")
    magic = _MAGIC.get(mime)
    if magic is not None and not content.startswith(magic):
        raise ValueError(f"{name}: the content is not a {mime} file (its first bytes do not match its name)")
    if mime.startswith("text/"):
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{name}: a text file must be UTF-8") from None
    return name, mime


def store_upload(session: Session, filename: str, content: bytes, uploaded_by: str) -> StoredFile:
    """Check and keep an uploaded file (the caller commits); ValueError as :func:`check_upload`."""
    name, mime = check_upload(filename, content)
    row = StoredFile(name=name, mime_type=mime, size=len(content), sha256=hashlib.sha256(content).hexdigest(),
                     content=content, uploaded_by=uploaded_by)
    session.add(row)
    session.flush()
    return row


# ------------------------------------------------------------------ references, at save and at send


def _channel_classes(channels: Iterable[str]) -> list[Any]:
    from vestnik.workers.channels import CHANNELS

    return [CHANNELS[c] for c in channels if c in CHANNELS]


def check_reference(session: Session, text: Any, channels: Iterable[str]) -> AttachmentRef:
    """At save: the reference read, each of ``channels`` able to send it, a stored file present and
    within each channel's limit.  ValueError naming what is wrong and what to do instead."""
    ref = parse(text)
    # A channel that carries no files at all (a webhook's JSON) sends the message without it, as it always has.
    classes = [cls for cls in _channel_classes(channels) if cls.supports_attachments]
    for cls in classes:
        if ref.source not in cls.attachment_sources:
            if ref.source == TELEGRAM_FILE_ID:
                raise ValueError(f"{cls.title or cls.name} cannot send a Telegram file_id (only Telegram holds that "
                                 "file): upload the file in the admin (Files) or give its URL, or send to "
                                 "Telegram only")
            raise ValueError(f"{cls.title or cls.name} cannot send {SOURCE_NAMES[ref.source]} as an attachment")
    if ref.source == FILE:
        row = session.get(StoredFile, int(ref.value))
        if row is None:
            raise ValueError(f"file:{ref.value}: no such uploaded file (admin: Files)")
        for cls in classes:
            limit = cls.max_attachment_bytes
            if row.size > limit:
                raise ValueError(f"file:{ref.value} ({row.name}, {size_text(row.size)}) is larger than the "
                                 f"{cls.name} limit of {limit // MB} MB")
    return ref


def reference_of(payload: Mapping[str, Any] | None, attachment_field: str | None) -> str | None:
    """The attachment a row names: the step's URL field, else the payload's ``attachment``."""
    data = payload or {}
    found = data.get(attachment_field) if attachment_field else None
    return found or data.get(ATTACHMENT_KEY) or None


def resolve(session: Session, text: str, channel: Any, filename: str | None = None,
            cache: dict[str, StoredFile | None] | None = None) -> tuple[Attachment, dict[str, Any]]:
    """The file for one row on ``channel`` (a Channel) and what the history records of it.

    DeliveryError.permanent for what will never work (a source the channel cannot send, a deleted
    upload, over the limit, a bad reference); fetching a URL may also fail transiently."""
    try:
        ref = parse(text)
    except ValueError as exc:
        raise DeliveryError.permanent(f"attachment: {exc}") from None
    name = channel.name
    if ref.source not in channel.attachment_sources:
        raise DeliveryError.permanent(f"attachment: {channel.title or name} cannot send {SOURCE_NAMES[ref.source]}"
                                      + (" (only Telegram holds that file)" if ref.source == TELEGRAM_FILE_ID else ""))
    if ref.source == URL:
        attachment = fetch_attachment(ref.value, filename, channel=channel)
    elif ref.source == FILE:
        cache = {} if cache is None else cache
        if ref.value not in cache:
            cache[ref.value] = session.scalars(select(StoredFile).options(undefer(StoredFile.content))
                                               .where(StoredFile.id == int(ref.value))).first()
        row = cache[ref.value]
        if row is None:
            raise DeliveryError.permanent(f"attachment: file:{ref.value} was deleted from the admin's Files")
        limit = channel.max_attachment_bytes
        if row.size > limit:
            raise DeliveryError.permanent(f"attachment: larger than {limit // MB} MB, the {name} limit")
        attachment = Attachment(filename=(filename or row.name)[:200], content=row.content, mime_type=row.mime_type)
    else:
        attachment = Attachment(filename=filename or "", content=b"", mime_type="", telegram_file_id=ref.value)
    about = {"source": ref.source, "ref": str(ref)[:300], "name": attachment.filename or None,
             "type": attachment.mime_type or None, "bytes": len(attachment.content) or None}
    return attachment, about
