"""The email channel's wire helpers: the quick paths give exactly what the general ones give."""

from __future__ import annotations

import base64
import random
import re

from vestnik.workers.channels.email import _dot_stuffed, _part


def _dot_stuffed_by_regex(data: bytes) -> bytes:
    data = re.sub(rb"\r?\n|\r", b"\r\n", data)
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def test_dot_stuffing_matches_the_general_rule():
    rng = random.Random(3)
    pieces = [b"a", b".", b"\r\n", b"\n", b"\r", b"..", b" ", b"x.y"]
    cases = [b"", b".", b"\r\n", b"abc", b"abc\r\n", b".abc\r\n", b"a\r\n.b\r\n"] + [
        b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for _ in range(5000)]
    for data in cases:
        assert _dot_stuffed(data) == _dot_stuffed_by_regex(data), data


def test_a_parts_text_gets_crlf_line_ends_whatever_it_had():
    for text in ("a\nb", "a\r\nb", "a\rb", "a\r\n\nb\r", "строка\nещё"):
        body = _part("text/plain", text).split("\r\n\r\n", 1)[1]
        assert base64.b64decode(body).decode() == re.sub(r"\r\n|\r|\n", "\r\n", text if text.endswith("\n")
                                                         else text + "\n")
