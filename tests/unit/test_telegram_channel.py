"""TelegramChannel against the fake Bot API, over real sockets: one test per provider answer."""

from __future__ import annotations

import re
import socket
import traceback
from types import SimpleNamespace

import pytest

from vestnik.shared.config import Settings
from vestnik.shared.fakes.botapi import FakeBotApi
from vestnik.workers.channels.base import Attachment, Button, DeliveryError, Outcome, RenderedMessage
from vestnik.workers.channels.telegram import TelegramChannel, split_html, tg_len

CHAT = "1001"


def make_channel(api: FakeBotApi, **overrides) -> TelegramChannel:
    options = {"token": api.token, "api_base": api.url, "connect_timeout_s": 1, "read_timeout_s": 2}
    options.update(overrides)
    return TelegramChannel(**options)


@pytest.fixture
def channel(bot_api):
    ch = make_channel(bot_api)
    yield ch
    ch.close()


def msg(text: str = "Урок в <b>18:00</b>", **kwargs) -> RenderedMessage:
    return RenderedMessage(notification_id=1, text=text, **kwargs)


def failure(channel: TelegramChannel, message: RenderedMessage | None = None,
            chat: str = CHAT) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        channel.send(chat, message or msg())
    return caught.value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------- success


def test_it_sends_html_text_and_returns_the_message_id(channel, bot_api):
    external_id = channel.send(CHAT, msg())

    [sent] = bot_api.messages()
    assert external_id == str(sent["message_id"])
    assert sent["chat_id"] == CHAT
    assert sent["text"] == "Урок в <b>18:00</b>"
    assert sent["parse_mode"] == "HTML"
    assert sent["link_preview_options"] == {"is_disabled": True}
    assert sent["reply_markup"] is None


def test_it_attaches_url_and_callback_buttons_as_an_inline_keyboard(channel, bot_api):
    buttons = ((Button("Открыть", url="https://example.com/lesson/42"),),
               (Button("5", callback_data="rate:42:5"), Button("4", callback_data="rate:42:4")))
    channel.send(CHAT, msg(buttons=buttons))

    [sent] = bot_api.messages()
    assert sent["reply_markup"] == {"inline_keyboard": [
        [{"text": "Открыть", "url": "https://example.com/lesson/42"}],
        [{"text": "5", "callback_data": "rate:42:5"}, {"text": "4", "callback_data": "rate:42:4"}],
    ]}


def test_a_button_without_url_or_callback_is_refused_before_sending(channel, bot_api):
    error = failure(channel, msg(buttons=((Button("nothing"),),)))

    assert error.outcome is Outcome.permanent
    assert bot_api.calls() == []


def test_it_sends_document_with_the_text_as_caption(channel, bot_api):
    pdf = Attachment("report.pdf", b"%PDF-1.4 fake", "application/pdf")
    external_id = channel.send(CHAT, msg("Отчёт за <i>ноябрь</i>", attachment=pdf,
                                         buttons=((Button("Ok", callback_data="ok"),),)))

    [sent] = bot_api.messages()
    assert sent["method"] == "sendDocument"
    assert external_id == str(sent["message_id"])
    assert sent["text"] == "Отчёт за <i>ноябрь</i>"
    assert sent["document"]["name"] == "report.pdf"
    assert sent["document"]["content"] == b"%PDF-1.4 fake"
    assert sent["document"]["mime_type"] == "application/pdf"
    assert sent["reply_markup"] == {"inline_keyboard": [[{"text": "Ok", "callback_data": "ok"}]]}


def test_text_too_long_for_a_caption_goes_first_then_the_document_with_the_buttons(channel, bot_api):
    text = "Подробный отчёт. " * 100  # ~1700 characters: over the 1024 caption limit
    external_id = channel.send(CHAT, msg(text, attachment=Attachment("r.csv", b"a,b\n", "text/csv"),
                                         buttons=((Button("Ok", callback_data="ok"),),)))

    first, second = bot_api.messages()
    assert (first["method"], second["method"]) == ("sendMessage", "sendDocument")
    assert external_id == str(first["message_id"])
    assert first["text"] == text and first["reply_markup"] is None
    assert second["text"] == "" and second["document"]["name"] == "r.csv"
    assert second["reply_markup"] is not None


def test_it_splits_long_text(channel, bot_api):
    lines = [f"<b>Строка {i}</b>: " + " ".join(["текст"] * 30) for i in range(60)]  # ~12 000 characters
    text = "\n".join(lines)
    buttons = ((Button("Ok", callback_data="ok"),),)

    external_id = channel.send(CHAT, msg(text, buttons=buttons))

    parts = bot_api.messages()
    assert len(parts) == 3  # the fake refuses >4096 characters and malformed HTML, so each part was valid
    assert external_id == str(parts[0]["message_id"])
    assert all(tg_len(p["text"]) <= 4096 for p in parts)
    assert [p["reply_markup"] is not None for p in parts] == [False, False, True]
    assert "\n".join(p["text"] for p in parts) == text  # cut at line breaks only


def test_a_tag_spanning_a_cut_is_closed_and_reopened(channel, bot_api):
    text = "<b>" + "слово " * 1500 + "</b>"  # one bold paragraph of 9000 characters

    channel.send(CHAT, msg(text))

    parts = [p["text"] for p in bot_api.messages()]
    assert len(parts) == 3
    assert all(p.startswith("<b>") and p.endswith("</b>") for p in parts)


def test_split_never_cuts_inside_a_tag_or_an_entity():
    text = ('<a href="https://example.com/a">' + "x" * 5000 + "</a>") + " &amp;" * 10
    for part in split_html(text, 4096):
        assert tg_len(part) <= 4096
        assert re.search(r"<[^>]*$", part) is None  # no tag left open at the end
        assert re.search(r"&\w*$", part) is None  # no entity cut in half
    assert split_html("short", 4096) == ["short"]


def test_split_counts_characters_as_telegram_does():
    text = "😀" * 3000  # 6000 UTF-16 code units
    parts = split_html(text, 4096)
    assert [tg_len(p) for p in parts] == [4096, 1904]
    assert "".join(parts) == text


# ---------------------------------------------------------------------- provider errors


@pytest.mark.parametrize("kind, description", [
    ("blocked", "Forbidden: bot was blocked by the user"),
    ("deactivated", "Forbidden: user is deactivated"),
    ("kicked", "Forbidden: bot was kicked from the group chat"),
])
def test_it_marks_address_unreachable_on_403_blocked(channel, bot_api, kind, description):
    bot_api.fail_next(1, kind)

    error = failure(channel)

    assert error.outcome is Outcome.permanent
    assert error.address_unreachable is True
    assert description in error.reason


def test_it_marks_address_unreachable_on_a_chat_blocked_for_good(channel, bot_api):
    bot_api.block_chat(CHAT)

    for _ in range(2):
        assert failure(channel).address_unreachable is True
    channel.send("1002", msg())  # other chats are fine
    assert [m["chat_id"] for m in bot_api.messages()] == ["1002"]


def test_it_marks_address_unreachable_on_400_chat_not_found(channel, bot_api):
    bot_api.unknown_chat(CHAT)

    error = failure(channel)

    assert error.outcome is Outcome.permanent
    assert error.address_unreachable is True
    assert "chat not found" in error.reason


def test_unparseable_html_is_permanent_but_keeps_the_address(channel, bot_api):
    error = failure(channel, msg("<div>not Telegram HTML</div>"))

    assert error.outcome is Outcome.permanent
    assert error.address_unreachable is False
    assert "can't parse entities" in error.reason


def test_migrated_group_is_permanent_and_names_the_new_chat(channel, bot_api):
    bot_api.migrate_chat("-1001", -1001234567890)

    error = failure(channel, chat="-1001")

    assert error.outcome is Outcome.permanent
    assert "-1001234567890" in error.reason


def test_it_returns_rate_limited_with_retry_after_on_429(channel, bot_api):
    bot_api.fail_next(1, "429", retry_after=7)

    error = failure(channel)

    assert error.outcome is Outcome.rate_limited
    assert error.retry_after_s == 7
    assert bot_api.messages() == []
    channel.send(CHAT, msg())  # the next call goes through
    assert len(bot_api.messages()) == 1


@pytest.mark.parametrize("kind", ["500", "503"])
def test_5xx_is_transient(channel, bot_api, kind):
    bot_api.fail_next(1, kind)

    error = failure(channel)

    assert error.outcome is Outcome.transient
    assert kind in error.reason


def test_502_html_page_is_transient(channel, bot_api):
    bot_api.fail_next(1, "502")

    error = failure(channel)

    assert error.outcome is Outcome.transient
    assert "502" in error.reason


def test_refused_connection_is_transient(bot_api):
    channel = make_channel(bot_api, api_base=f"http://127.0.0.1:{closed_port()}")

    error = failure(channel)

    assert error.outcome is Outcome.transient


def test_connect_timeout_is_transient(bot_api):
    with socket.socket() as server:  # a listener that never accepts, its backlog full: connects time out
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        fillers = []
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(server.getsockname())
            fillers.append(s)
        channel = make_channel(bot_api, api_base=f"http://127.0.0.1:{server.getsockname()[1]}",
                               connect_timeout_s=0.3, read_timeout_s=0.3)
        try:
            error = failure(channel)
        finally:
            for s in fillers:
                s.close()

    assert error.outcome is Outcome.transient
    assert bot_api.token not in str(error)


def test_a_connection_lost_after_the_request_was_written_is_uncertain(bot_api):
    """A server that reads the whole request and hangs up without answering may have acted on it."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def hang_up():
            conn, _ = server.accept()
            conn.recv(65536)
            conn.close()

        import threading

        t = threading.Thread(target=hang_up, daemon=True)
        t.start()
        channel = make_channel(bot_api, api_base=f"http://127.0.0.1:{server.getsockname()[1]}")
        error = failure(channel)
        t.join(5)

    assert error.outcome is Outcome.uncertain
    assert bot_api.token not in str(error)


def test_it_treats_read_timeout_as_uncertain(bot_api):
    channel = make_channel(bot_api, read_timeout_s=0.5)
    bot_api.fail_next(1, "stall", stall_s=3)

    error = failure(channel)

    assert error.outcome is Outcome.uncertain
    # ... and rightly so: the message did reach the chat.
    assert [m["chat_id"] for m in bot_api.messages()] == [CHAT]


def test_failure_after_a_delivered_part_is_uncertain(channel, bot_api):
    bot_api.fail_ratio(0.5, "500")  # the first part passes, the second fails
    text = "\n".join("строка " * 20 for _ in range(60))

    error = failure(channel, msg(text))

    assert error.outcome is Outcome.uncertain  # a retry would send the first part again
    assert len(bot_api.messages()) == 1


def test_wrong_token_is_permanent_with_a_clear_reason(bot_api):
    channel = make_channel(bot_api, token="999:wrong-token")

    error = failure(channel)

    assert error.outcome is Outcome.permanent
    assert error.address_unreachable is False
    assert "401" in error.reason and "VESTNIK_TELEGRAM_TOKEN" in error.reason


def test_unconfigured_channel_fails_permanently_at_send():
    channel = TelegramChannel.from_settings(Settings(telegram_token=""))

    error = failure(channel)

    assert error.outcome is Outcome.permanent
    assert "not configured" in error.reason


# ---------------------------------------------------------------------- secrets and connections


@pytest.mark.parametrize("scenario", [
    "refused", "read_timeout", "unauthorized", "server_error", "rate_limited", "blocked"])
def test_token_never_appears_in_errors(bot_api, scenario):
    channel = make_channel(bot_api, read_timeout_s=0.3)
    if scenario == "refused":
        channel = make_channel(bot_api, api_base=f"http://127.0.0.1:{closed_port()}")
    elif scenario == "read_timeout":
        bot_api.fail_next(1, "stall", stall_s=2)
    elif scenario == "unauthorized":
        bot_api.token = "other:token"  # the fake now refuses ours
    elif scenario == "server_error":
        bot_api.fail_next(1, "502")
    elif scenario == "rate_limited":
        bot_api.fail_next(1, "429")
    else:
        bot_api.block_chat(CHAT)

    error = failure(channel)

    token = channel._token
    rendered = "".join(traceback.format_exception(error))  # includes any chained exception
    for text in (str(error), repr(error), error.reason, rendered):
        assert token not in text
        assert token.split(":")[1] not in text


def test_connection_is_reused(channel, bot_api):
    for _ in range(5):
        channel.send(CHAT, msg())

    assert len(bot_api.messages()) == 5
    assert bot_api.connections == 1


# ---------------------------------------------------------------------- the rest of the interface


def test_address_and_limit_key_are_the_chat_id(channel):
    client = SimpleNamespace(id=1, email="a@example.com", telegram_chat_id="1001")
    assert channel.address_of(client) == "1001"
    assert channel.limit_key("1001") == "1001"
    assert channel.address_of(SimpleNamespace(id=2, email=None, telegram_chat_id=None)) is None
    assert channel.address_of(SimpleNamespace(id=3, email=None, telegram_chat_id="")) is None


def test_api_calls_reach_the_bot_api(channel, bot_api):
    assert channel.get_me()["is_bot"] is True
    pushed = bot_api.push_callback(CHAT, "rate:42:5")

    updates = channel.api_call("getUpdates", offset=0, timeout=0)
    channel.api_call("answerCallbackQuery", callback_query_id=pushed["callback_query"]["id"], text="Спасибо!")
    channel.api_call("getUpdates", offset=pushed["update_id"] + 1, timeout=0)

    assert [u["callback_query"]["data"] for u in updates] == ["rate:42:5"]
    assert [a["text"] for a in bot_api.callback_answers()] == ["Спасибо!"]
    assert channel.api_call("getUpdates", timeout=0) == []  # confirmed by the offset


def test_api_call_errors_are_classified_too(channel, bot_api):
    channel.api_call("setWebhook", url="https://example.com/webhooks/telegram")

    with pytest.raises(DeliveryError) as caught:
        channel.api_call("getUpdates", timeout=0)

    assert caught.value.outcome is Outcome.permanent
    assert "webhook is active" in caught.value.reason


def test_fake_fail_ratio_fails_every_second_send(channel, bot_api):
    bot_api.fail_ratio(0.5, "500")
    outcomes = []
    for _ in range(6):
        try:
            channel.send(CHAT, msg())
            outcomes.append("sent")
        except DeliveryError as exc:
            outcomes.append(exc.outcome.value)

    assert outcomes == ["sent", "transient"] * 3
