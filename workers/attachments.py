"""Fetching a file named by an event (a finished report) to send as a document."""

from __future__ import annotations

import os
import urllib.parse

import requests

from vestnik.workers.channels.base import Attachment, DeliveryError

#: Telegram bots may upload documents up to 50 MB.
MAX_BYTES = 50 * 1024 * 1024


def fetch_attachment(url: str, filename: str | None = None, *, timeout_s: float = 30) -> Attachment:
    """Download ``url``; a network failure is transient, a 4xx or an oversized file permanent."""
    try:
        with requests.get(url, timeout=timeout_s, stream=True) as resp:
            if 400 <= resp.status_code < 500:
                raise DeliveryError.permanent(f"attachment: HTTP {resp.status_code} for the file")
            if resp.status_code >= 500:
                raise DeliveryError.transient(f"attachment: HTTP {resp.status_code} for the file")
            chunks, size = [], 0
            for chunk in resp.iter_content(64 * 1024):
                size += len(chunk)
                if size > MAX_BYTES:
                    raise DeliveryError.permanent(f"attachment: larger than {MAX_BYTES // (1024 * 1024)} MB")
                chunks.append(chunk)
            mime = (resp.headers.get("Content-Type") or "application/octet-stream").split(";")[0].strip()
    except requests.RequestException as exc:
        raise DeliveryError.transient(f"attachment: {type(exc).__name__}") from None
    name = filename or os.path.basename(urllib.parse.urlsplit(url).path) or "file"
    return Attachment(filename=name[:200], content=b"".join(chunks), mime_type=mime)
