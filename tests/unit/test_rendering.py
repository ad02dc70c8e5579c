"""The sandboxed renderer: localised times, escaping, the sandbox, Telegram HTML."""

from __future__ import annotations

import pytest

from vestnik.shared.errors import TemplateError
from vestnik.shared.rendering import build_context, html_to_text, render, telegram_html, unknown_telegram_tags


def ctx(data, locale="ru", tz="Europe/Moscow"):
    return build_context(data, datetime_fields={"starts_at"}, locale=locale, tz=tz, client={"name": "Анна"})


def test_times_are_shown_in_the_clients_zone_and_language():
    data = {"starts_at": "2026-11-25T13:00:00+00:00"}
    assert render("{{ starts_at }}", ctx(data), html_mode=False) == "25 ноября, 16:00"
    assert render("{{ starts_at }}", ctx(data, "en", "Asia/Yekaterinburg"), html_mode=False,
                  locale="en") == "25 November, 18:00"


def test_variables_are_escaped_in_html_but_not_in_text():
    data = {"lesson_title": "<script>alert(1)</script>"}
    assert "&lt;script&gt;" in render("<b>{{ lesson_title }}</b>", ctx(data), html_mode=True)
    assert render("{{ lesson_title }}", ctx(data), html_mode=False) == "<script>alert(1)</script>"


@pytest.mark.parametrize(
    "source",
    ["{{ ''.__class__.__mro__ }}", "{{ name.__class__ }}", "{% for x in range(10**9) %}{% endfor %}",
     "{{ lipsum.__globals__ }}"],
)
def test_the_sandbox_refuses_python_internals(source):
    with pytest.raises(TemplateError):
        render(source, ctx({}), html_mode=True)


def test_undefined_variable_is_a_named_error():
    with pytest.raises(TemplateError, match="undefined"):
        render("{{ nope }}", ctx({}), html_mode=True)


def test_output_size_is_bounded():
    with pytest.raises(TemplateError, match="limit"):
        render("{% for i in range(1000) %}{{ 'x' * 200 }}{% endfor %}", ctx({}), html_mode=False)


def test_telegram_html_keeps_allowed_tags_and_drops_the_rest():
    out = telegram_html('<p>Hi <b>A</b> <a href="javascript:alert(1)">x</a> <a href="https://ok">y</a></p><div>z</div>')
    assert out == 'Hi <b>A</b> x <a href="https://ok">y</a>z'
    assert unknown_telegram_tags("<b>x</b><div>y</div><marquee>") == {"div", "marquee"}


def test_html_email_gets_a_plain_text_alternative():
    text = html_to_text('<p>Hello</p><ul><li>one</li></ul><a href="https://pay">Pay</a>')
    assert "Hello" in text and "- one" in text and "Pay (https://pay)" in text


def test_money_is_formatted_for_the_locale():
    assert render("{{ 4500|money('RUB') }}", ctx({}), html_mode=False, locale="ru") == "4\xa0500,00\xa0₽"
