"""Where a message's attached file comes from, written as one short reference.

A rule step, a broadcast or a ``mass_broadcast`` event names its file with one
of three references (the payload key :data:`ATTACHMENT_KEY`, or a rule step's
``attachment`` in the admin):

- ``https://...``: a URL, fetched when the message is sent (``workers/attachments.py``);
- ``file:<id>``: a file uploaded in the admin and stored by Vestnik (``stored_files``);
- ``tg:<file_id>``: a file Telegram already holds, by its ``file_id``: only the
  Telegram channel can send it (email needs the file itself).

This module only reads the reference (ground floor: no database, no channels);
what each channel accepts is the channel's (``Channel.attachment_sources``) and
``workers/attachments.py`` checks a reference against the channels it will go to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vestnik.shared import wire

#: the payload key a broadcast or a rule step's attachment is carried under
ATTACHMENT_KEY = "attachment"
URL, FILE, TELEGRAM_FILE_ID = "url", "file", "telegram_file_id"
#: how each source is named to a person
SOURCE_NAMES = {URL: "a URL", FILE: "a file uploaded in the admin", TELEGRAM_FILE_ID: "a Telegram file_id"}

_FILE = re.compile(r"file:([1-9][0-9]{0,18})", re.ASCII)
#: Telegram's file ids are URL-safe base64 (about 70-100 characters today)
_TG = re.compile(r"tg:([A-Za-z0-9_-]{10,200})", re.ASCII)
_URL = re.compile(wire.URL_PATTERN)


@dataclass(frozen=True)
class AttachmentRef:
    source: str  # URL | FILE | TELEGRAM_FILE_ID
    value: str  # the URL, the stored file's id, the file_id

    def __str__(self) -> str:
        return {URL: self.value, FILE: f"file:{self.value}", TELEGRAM_FILE_ID: f"tg:{self.value}"}[self.source]


def parse(text: object) -> AttachmentRef:
    """The reference in ``text``; ValueError saying what a reference looks like."""
    value = text.strip() if isinstance(text, str) else text
    if isinstance(value, str):
        if (m := _FILE.fullmatch(value)) is not None:
            return AttachmentRef(FILE, m.group(1))
        if (m := _TG.fullmatch(value)) is not None:
            return AttachmentRef(TELEGRAM_FILE_ID, m.group(1))
        if len(value) <= 2000 and _URL.search(value):
            return AttachmentRef(URL, value)
    shown = repr(value)[:60]
    raise ValueError(f"{shown} is not an attachment: give an http(s) URL, file:<id> of a file uploaded in the "
                     "admin (Files), or tg:<file_id> of a file Telegram holds")
