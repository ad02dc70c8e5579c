"""Inline buttons an admin defines on a Telegram template: URL buttons and callback buttons.

Written in the template editor one row per line, buttons of a row separated
by ``|``, each ``text -> target``::

    Заказать -> https://shop.example.uz/order/{{ order_id }}
    Да -> callback:yes | Нет -> callback:no

A target is an ``http(s)://`` or ``tg://`` URL, or ``callback:<data>``: a
press comes back through the bot's webhook and is recorded on the message
(``workers/reactions.py``).  Texts and URLs may use the template's variables;
they are rendered with the message.

Telegram's limits are checked when the template is saved (:func:`parse`) and
again after rendering (:func:`check_rendered`): callback data 1-64 bytes
(with Vestnik's ``btn:`` prefix), at most 8 buttons in a row and 100 in all;
a text is 1-64 characters (Telegram cuts longer ones on phones).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vestnik.shared.messages import Button

MAX_PER_ROW = 8
MAX_BUTTONS = 100
MAX_TEXT_CHARS = 64
MAX_CALLBACK_BYTES = 64
#: a callback button's data as sent: the prefix tells the bot it is an admin-defined button
CALLBACK_PREFIX = "btn:"
URL_SCHEMES = ("http://", "https://", "tg://")
_ARROW = re.compile(r"\s*->\s*")


class ButtonError(ValueError):
    """A button definition Telegram would refuse; the message names the row and the button."""


@dataclass(frozen=True)
class ButtonSpec:
    """One button as written: its text and target may hold template variables."""

    text: str
    url: str | None = None
    callback: str | None = None


def _check_text(text: str, where: str) -> None:
    if not text.strip():
        raise ButtonError(f"{where}: the text is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise ButtonError(f"{where}: the text is longer than {MAX_TEXT_CHARS} characters ({len(text)})")


def _check_url(url: str, where: str) -> None:
    if not url.lower().startswith(URL_SCHEMES) or any(c.isspace() for c in url):
        raise ButtonError(f"{where}: the link must start with http://, https:// or tg:// (got {url[:60]!r})")


def _check_callback(data: str, where: str) -> None:
    size = len((CALLBACK_PREFIX + data).encode())
    if not data:
        raise ButtonError(f"{where}: callback: needs data, e.g. callback:yes")
    if size > MAX_CALLBACK_BYTES:
        raise ButtonError(f"{where}: callback data is {size} bytes with the prefix {CALLBACK_PREFIX!r}; "
                          f"Telegram takes at most {MAX_CALLBACK_BYTES}")


_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}")


def _split_row(line: str) -> list[str]:
    """A row's buttons: split at ``|`` outside template tags (``{{ x|urlencode }}`` is one button)."""
    parts, start, pos = [], 0, 0
    while pos < len(line):
        tag = _TAG.match(line, pos)
        if tag:
            pos = tag.end()
        elif line[pos] == "|":
            parts.append(line[start:pos])
            start = pos = pos + 1
        else:
            pos += 1
    return [*parts, line[start:]]


def parse(source: str | None) -> tuple[tuple[ButtonSpec, ...], ...]:
    """The rows of buttons written in the editor; raises :class:`ButtonError` naming what is wrong."""
    rows: list[tuple[ButtonSpec, ...]] = []
    total = 0
    for line in (source or "").splitlines():
        if not line.strip():
            continue
        row: list[ButtonSpec] = []
        for n, part in enumerate(_split_row(line), start=1):
            where = f"row {len(rows) + 1}, button {n}"
            pieces = _ARROW.split(part.strip(), maxsplit=1)
            if len(pieces) != 2:
                raise ButtonError(f"{where}: write it as 'text -> https://...' or 'text -> callback:data'")
            text, target = pieces[0].strip(), pieces[1].strip()
            _check_text(text, where)
            if target.lower().startswith("callback:"):
                data = target.split(":", 1)[1].strip()
                _check_callback(data, where)
                row.append(ButtonSpec(text, callback=data))
            else:
                if "{{" not in target:  # a variable's value is checked after rendering
                    _check_url(target, where)
                elif not target.lower().startswith(URL_SCHEMES + ("{{",)):
                    _check_url(target, where)
                row.append(ButtonSpec(text, url=target))
        if len(row) > MAX_PER_ROW:
            raise ButtonError(f"row {len(rows) + 1}: {len(row)} buttons; Telegram shows at most {MAX_PER_ROW} "
                              "in a row")
        total += len(row)
        rows.append(tuple(row))
    if total > MAX_BUTTONS:
        raise ButtonError(f"{total} buttons; Telegram takes at most {MAX_BUTTONS} on a message")
    return tuple(rows)


def check_rendered(rows: tuple[tuple[Button, ...], ...]) -> None:
    """The limits again on rendered buttons (a variable may have made a text too long or a link unsafe)."""
    for r, row in enumerate(rows, start=1):
        for n, button in enumerate(row, start=1):
            where = f"button row {r}, button {n}"
            _check_text(button.text, where)
            if button.url is not None:
                _check_url(button.url, where)
            elif len((button.callback_data or "").encode()) > MAX_CALLBACK_BYTES:
                raise ButtonError(f"{where}: callback data longer than {MAX_CALLBACK_BYTES} bytes")
