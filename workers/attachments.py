"""Fetching a file an event names (a finished report, an invoice's PDF) to attach to a message.

A rule's step says which payload field holds the file's http(s) URL (``Step.attachment_field``);
delivery fetches it for each row, for Telegram (a document) and email (a MIME part) alike.  Each
channel has its own size limit (:data:`MAX_BYTES`) and the file's type must be one a person opens
(:data:`ALLOWED_TYPES`: an HTML answer is usually a login or error page, not the file), else the row
fails with a reason that says so.
"""

from __future__ import annotations

import os
import urllib.parse

import requests

from vestnik.workers.channels.base import Attachment, DeliveryError

MB = 1024 * 1024
#: Per channel: Telegram bots upload documents up to 50 MB; email stays under the 25 MB most providers
#: accept once base64 has made the part a third larger.
MAX_BYTES = {"telegram": 50 * MB, "email": 18 * MB}
#: Types a person opens; anything else (text/html, executables) is refused by name.
ALLOWED_TYPES = frozenset({
    "application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp", "text/csv", "text/plain",
    "application/zip", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation", "application/vnd.ms-excel",
    "application/msword", "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.text", "application/octet-stream",
})


def fetch_attachment(url: str, filename: str | None = None, *, channel: str = "telegram",
                     timeout_s: float = 30) -> Attachment:
    """Download ``url`` for ``channel``; a network failure is transient, a 4xx, a file over the channel's
    limit or of a type not in :data:`ALLOWED_TYPES` permanent."""
    max_bytes = MAX_BYTES.get(channel, min(MAX_BYTES.values()))
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
                    raise DeliveryError.permanent(f"attachment: larger than {max_bytes // MB} MB, the {channel} "
                                                  "limit")
                chunks.append(chunk)
    except requests.RequestException as exc:
        raise DeliveryError.transient(f"attachment: {type(exc).__name__}") from None
    name = filename or os.path.basename(urllib.parse.urlsplit(url).path) or "file"
    return Attachment(filename=name[:200], content=b"".join(chunks), mime_type=mime)
