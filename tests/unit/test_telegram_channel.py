"""TelegramChannel against the fake Bot API over real HTTP: one test per provider answer."""

from __future__ import annotations

import pytest

from workers.channels.base import Attachment, Button, DeliveryError, Outcome, RenderedMessage
from workers.channels.telegram import TelegramChannel, split_text


@pytest.fixture
def channel(bot_api):
    ch = TelegramChannel(token=bot_api.token, api_base=bot_api.url, connect_timeout_s=2, read_timeout_s=0.5)
    yield ch
    ch.close()


def msg(text="<b>Hi</b>", **kw) -> RenderedMessage:
    return RenderedMessage(notification_id=1, text=text, **kw)


def sending_fails(channel, address="1001", message=None) -> DeliveryError:
    with pytest.raises(DeliveryError) as err:
        channel.send(address, message or msg())
    return err.value


def test_it_sends_html_with_buttons_and_returns_the_message_id(channel, bot_api):
    buttons = ((Button("1", callback_data="rate:B:1"), Button("Pay", url="https://pay.example/1")),)
    external = channel.send("1001", msg(buttons=buttons))
    [sent] = bot_api.messages()
    assert external == str(sent["message_id"]) and sent["parse_mode"] == "HTML" and sent["text"] == "<b>Hi</b>"
    assert sent["reply_markup"]["inline_keyboard"][0][1] == {"text": "Pay", "url": "https://pay.example/1"}


def test_it_returns_rate_limited_with_retry_after_on_429(channel, bot_api):
    bot_api.fail_next(1, "429", retry_after=7)
    err = sending_fails(channel)
    assert err.outcome is Outcome.rate_limited and err.retry_after_s == 7


def test_it_marks_address_unreachable_on_403_blocked(channel, bot_api):
    bot_api.block_chat("1001")
    err = sending_fails(channel)
    assert err.outcome is Outcome.permanent and err.address_unreachable and "blocked" in err.reason


def test_it_marks_address_unreachable_on_400_chat_not_found(channel, bot_api):
    bot_api.unknown_chat("1001")
    err = sending_fails(channel)
    assert err.outcome is Outcome.permanent and err.address_unreachable


def test_other_400s_are_permanent_but_keep_the_address(channel):
    err = sending_fails(channel, message=msg(text="   "))  # Bad Request: message text is empty
    assert err.outcome is Outcome.permanent and not err.address_unreachable


@pytest.mark.parametrize("kind", ["500", "502"])
def test_server_errors_are_transient(channel, bot_api, kind):
    bot_api.fail_next(1, kind)
    assert sending_fails(channel).outcome is Outcome.transient


def test_it_treats_read_timeout_as_uncertain(channel, bot_api):
    bot_api.state.stall_s = 1.5
    bot_api.fail_next(1, "stall")
    err = sending_fails(channel)
    assert err.outcome is Outcome.uncertain
    assert len(bot_api.messages()) == 1  # the fake did accept it: resending would duplicate


def test_connection_refused_is_transient_and_token_never_appears_in_errors(bot_api):
    ch = TelegramChannel(token="999:SECRET-TOKEN-CANARY", api_base="http://127.0.0.1:9", read_timeout_s=1)
    err = sending_fails(ch)
    assert err.outcome is Outcome.transient and "SECRET-TOKEN-CANARY" not in str(err)
    assert err.__cause__ is None and err.__suppress_context__  # the requests error (with the URL) is dropped


def test_a_wrong_token_is_permanent(bot_api):
    ch = TelegramChannel(token="1:wrong", api_base=bot_api.url)
    err = sending_fails(ch)
    assert err.outcome is Outcome.permanent and "token" in err.reason and "1:wrong" not in err.reason


def test_it_splits_long_text_at_line_breaks(channel, bot_api):
    text = "\n".join(f"line {i} " + "x" * 90 for i in range(100))  # ~10,000 characters
    first = channel.send("1001", msg(text=text, buttons=((Button("ok", callback_data="ok"),),)))
    parts = bot_api.messages()
    assert len(parts) == 3 and all(len(p["text"]) <= 4096 for p in parts)
    assert "\n".join(p["text"] for p in parts) == text
    assert first == str(parts[0]["message_id"]) and parts[-1]["reply_markup"] and not parts[0]["reply_markup"]
    assert split_text("a" * 10, 4) == ["aaaa", "aaaa", "aa"]


def test_it_sends_document_with_caption(channel, bot_api):
    att = Attachment("report.xlsx", b"PK\x03\x04 data", "application/vnd.ms-excel")
    channel.send("1001", msg(text="📊 <b>Report</b>", attachment=att))
    [sent] = bot_api.messages()
    assert sent["method"] == "sendDocument" and sent["document"]["name"] == "report.xlsx"
    assert sent["document"]["content"] == b"PK\x03\x04 data" and sent["text"] == "📊 <b>Report</b>"


def test_unconfigured_telegram_fails_permanently_naming_the_variable():
    err = sending_fails(TelegramChannel(token="", api_base="http://127.0.0.1:9"))
    assert "VESTNIK_TELEGRAM_TOKEN" in err.reason
