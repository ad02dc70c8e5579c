"""Line breaks written next to block tags are kept (Telegram shows them; seen in the admin's preview)."""

from __future__ import annotations

from vestnik.shared.rendering import render
from vestnik.shared.seeds import DEFAULTS


def test_a_line_break_inside_an_if_block_is_kept():
    source = "A{% if x %}\nB {{ x }}{% endif %}\nC"
    assert render(source, {"x": 1}, html_mode=True) == "A\nB 1\nC"
    assert render(source, {"x": 0}, html_mode=True) == "A\nC"


def test_the_shipped_lesson_cancelled_message_keeps_its_reason_line():
    body = next(d.body for d in DEFAULTS if d.code == "LESSON_CANCELLED" and d.channel == "telegram"
                and d.locale == "ru")
    out = render(body, {"lesson_title": "Робототехника", "starts_at": "25 ноября", "reason": "болезнь"},
                 html_mode=True)
    assert out.endswith("Робототехника, 25 ноября\nПричина: болезнь")
