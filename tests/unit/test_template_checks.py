"""Template checks at save time: each problem named at its field."""

from __future__ import annotations

from vestnik.shared.seeds import DEFAULTS
from vestnik.workers.template_checks import check_template


def test_every_shipped_template_passes():
    for d in DEFAULTS:
        assert check_template(d.code, d.channel, d.subject or "", d.body, d.locale) == [], d


def test_syntax_error_names_the_line():
    [(field, message)] = check_template("LESSON_CANCELLED", "telegram", "", "ok\n{{ lesson_title ")
    assert field == "body" and "line 2" in message


def test_unknown_variable_is_named_with_what_is_available():
    [(field, message)] = check_template("LESSON_CANCELLED", "telegram", "", "{{ lesson_titel }}")
    assert field == "body" and message.startswith("lesson_titel: not offered") and "lesson_title" in message


def test_sandbox_violation_is_refused():
    problems = check_template("LESSON_CANCELLED", "telegram", "", "{{ lesson_title.__class__.__mro__ }}")
    assert problems and "sandbox" in problems[0][1]


def test_telegram_tags_and_length():
    [(_, message)] = check_template("LESSON_CANCELLED", "telegram", "", "<div>{{ lesson_title }}</div>")
    assert "div" in message
    [(_, message)] = check_template("LESSON_CANCELLED", "telegram", "", "x" * 5000)
    assert "4096" in message


def test_email_needs_a_subject():
    assert check_template("LESSON_CANCELLED", "email", "", "<p>{{ name }}</p>") == [
        ("subject", "Email needs a subject")]
