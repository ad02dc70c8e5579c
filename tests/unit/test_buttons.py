"""Admin-defined Telegram buttons (shared/buttons.py): written one row per line, checked against
Telegram's limits when the template is saved."""

from __future__ import annotations

import pytest

from vestnik.shared.buttons import ButtonError, ButtonSpec, parse


def test_rows_of_url_and_callback_buttons():
    assert parse("Заказать -> https://shop.example.uz/o/{{ order_id }}\n\nДа -> callback:yes | Нет -> callback:no") == (
        (ButtonSpec("Заказать", url="https://shop.example.uz/o/{{ order_id }}"),),
        (ButtonSpec("Да", callback="yes"), ButtonSpec("Нет", callback="no")))
    assert parse("Open -> tg://resolve?domain=vestnik") == ((ButtonSpec("Open", url="tg://resolve?domain=vestnik"),),)
    assert parse("Pay -> {{ payment_url }}") == ((ButtonSpec("Pay", url="{{ payment_url }}"),),)
    assert parse("{{ t|upper }} -> https://x.uz/{{ q|urlencode }} | B -> callback:b") == (
        (ButtonSpec("{{ t|upper }}", url="https://x.uz/{{ q|urlencode }}"), ButtonSpec("B", callback="b")),)
    assert parse("") == parse(None) == ()


@pytest.mark.parametrize(("source", "says"), [
    ("Order https://x.uz", "row 1, button 1: write it as 'text -> https://...'"),
    (" -> https://x.uz", "row 1, button 1: the text is empty"),
    ("x" * 65 + " -> https://x.uz", "longer than 64 characters"),
    ("Bad -> javascript:alert(1)", "must start with http://, https:// or tg://"),
    ("Ok -> https://x.uz\nBad -> ftp://x.uz", "row 2, button 1: the link must start"),
    ("Big -> callback:" + "d" * 61, "callback data is 65 bytes"),
    ("Empty -> callback:", "callback: needs data"),
    (" | ".join(f"{n} -> callback:{n}" for n in range(9)), "row 1: 9 buttons; Telegram shows at most 8"),
    ("\n".join(" | ".join(f"{r}{n} -> callback:{r}{n}" for n in range(8)) for r in range(13)), "104 buttons"),
])
def test_what_telegram_would_refuse_is_named_at_save(source, says):
    with pytest.raises(ButtonError, match=None) as error:
        parse(source)
    assert says in str(error.value)
