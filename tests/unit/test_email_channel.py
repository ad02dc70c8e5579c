"""EmailChannel against a real SMTP server (aiosmtpd) over real sockets: one test per server answer."""

from __future__ import annotations

import socket
import threading
import traceback
from types import SimpleNamespace

import pytest

from vestnik.shared.config import Settings, SmtpParams, parse_smtp_url
from vestnik.shared.fakes.smtp import FakeSmtpServer
from vestnik.workers.channels.base import Attachment, DeliveryError, Outcome, RenderedMessage
from vestnik.workers.channels.email import EmailChannel, classify_reply

TO = "anna@example.com"
PASSWORD = "s3cret-Pa55word"  # noqa: S105 - a test password


def make_channel(server: FakeSmtpServer, **overrides) -> EmailChannel:
    options = {"smtp": parse_smtp_url(server.url), "email_from": "Vestnik <noreply@school.example>",
               "timeout_s": 2}
    options.update(overrides)
    return EmailChannel(**options)


@pytest.fixture
def channel(smtp_server):
    ch = make_channel(smtp_server)
    yield ch
    ch.close()


def msg(notification_id: int = 42, **kwargs) -> RenderedMessage:
    fields = {"text": "Здравствуйте!\nУрок завтра в 18:00.", "subject": "Напоминание об уроке"}
    fields.update(kwargs)
    return RenderedMessage(notification_id=notification_id, **fields)


def failure(channel: EmailChannel, message: RenderedMessage | None = None, to: str = TO) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        channel.send(to, message or msg())
    return caught.value


# ---------------------------------------------------------------------- the message


def test_multipart_alternative_has_text_and_html(channel, smtp_server):
    channel.send(TO, msg(html="<p>Здравствуйте!</p>\n<p>Урок завтра в <b>18:00</b>.</p>"))

    [sent] = smtp_server.messages()
    email = sent["message"]
    assert email.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in email.iter_parts()] == ["text/plain", "text/html"]
    assert sent["text"] == "Здравствуйте!\nУрок завтра в 18:00.\n"
    assert "<b>18:00</b>" in sent["html"]
    assert sent["subject"] == "Напоминание об уроке"
    assert email["From"] == "Vestnik <noreply@school.example>"
    assert email["To"] == TO and email["Date"]
    assert (sent["from"], sent["rcpt_tos"]) == ("noreply@school.example", [TO])


def test_the_wire_format_has_crlf_line_ends_only(channel, smtp_server):
    channel.send(TO, msg(text="a\nb\n.starts with a dot", html="<p>x</p>\n<p>y</p>"))

    raw = smtp_server.messages()[0]["raw"]
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.isascii()  # 7-bit transfer encodings: no server needs 8BITMIME
    assert smtp_server.messages()[0]["text"] == "a\nb\n.starts with a dot\n"


def test_message_id_is_derived_from_the_notification_and_returned(channel, smtp_server):
    external_id = channel.send(TO, msg(notification_id=1234))

    assert external_id == "<notification-1234@school.example>"
    assert smtp_server.messages()[0]["message_id"] == external_id


def test_extra_headers_are_added(channel, smtp_server):
    unsubscribe = "<https://school.example/unsubscribe/abc>"
    channel.send(TO, msg(headers={"List-Unsubscribe": unsubscribe,
                                  "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}))

    email = smtp_server.messages()[0]["message"]
    assert email["List-Unsubscribe"] == unsubscribe
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email["Auto-Submitted"] == "auto-generated"


def test_plain_text_only_is_a_single_part(channel, smtp_server):
    channel.send(TO, msg())

    assert smtp_server.messages()[0]["message"].get_content_type() == "text/plain"


def test_attachment_is_sent(channel, smtp_server):
    pdf = Attachment("отчёт.pdf", b"%PDF-1.4", "application/pdf")
    channel.send(TO, msg(html="<p>Отчёт</p>", attachment=pdf))

    [sent] = smtp_server.messages()
    assert sent["message"].get_content_type() == "multipart/mixed"
    assert sent["attachments"] == [
        {"filename": "отчёт.pdf", "mime_type": "application/pdf", "content": b"%PDF-1.4"}]
    assert sent["html"] == "<p>Отчёт</p>\n"


# ---------------------------------------------------------------------- refused before sending


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: victim@example.com", "Hi\nBcc: victim@example.com", "Hi\r"])
def test_crlf_in_subject_is_rejected(channel, smtp_server, subject):
    error = failure(channel, msg(subject=subject))

    assert error.outcome is Outcome.permanent
    assert "header injection" in error.reason
    assert smtp_server.connections == 0


def test_crlf_in_an_extra_header_is_rejected(channel, smtp_server):
    error = failure(channel, msg(headers={"List-Unsubscribe": "<https://x>\r\nBcc: victim@example.com"}))

    assert error.outcome is Outcome.permanent
    assert smtp_server.connections == 0


def test_extra_headers_cannot_override_the_envelope_headers(channel, smtp_server):
    for name in ("To", "bcc", "From"):
        assert failure(channel, msg(headers={name: "victim@example.com"})).outcome is Outcome.permanent
    assert smtp_server.connections == 0


@pytest.mark.parametrize("address", [
    "a@example.com, b@example.com", "a@example.com;b@example.com", "Anna <a@example.com>",
    "a@example.com\r\nBcc: b@example.com", "not-an-address", "a@b@example.com",
])
def test_only_a_single_bare_address_is_accepted(channel, smtp_server, address):
    error = failure(channel, to=address)

    assert error.outcome is Outcome.permanent
    assert smtp_server.connections == 0


def test_unconfigured_channel_fails_permanently_at_send():
    channel = EmailChannel.from_settings(Settings(smtp_url=""))

    error = failure(channel)

    assert error.outcome is Outcome.permanent
    assert "not configured" in error.reason


# ---------------------------------------------------------------------- server answers


def test_451_is_transient(channel, smtp_server):
    smtp_server.fail_next(1, "451 4.7.1 Try again later")

    error = failure(channel)

    assert error.outcome is Outcome.transient
    assert "451" in error.reason
    channel.send(TO, msg())  # the connection is still usable
    assert len(smtp_server.messages()) == 1
    assert smtp_server.connections == 1


def test_421_at_rcpt_is_transient(channel, smtp_server):
    smtp_server.fail_next(1, "421 4.3.2 Service shutting down", at="RCPT")

    assert failure(channel).outcome is Outcome.transient


def test_550_is_permanent_and_marks_address(channel, smtp_server):
    smtp_server.fail_next(1, "550 5.1.1 Mailbox unavailable", at="RCPT")

    error = failure(channel)

    assert error.outcome is Outcome.permanent
    assert error.address_unreachable is True
    assert "5.1.1" in error.reason
    channel.send("bob@example.com", msg())  # RSET left the connection ready for the next message
    assert [m["to"] for m in smtp_server.messages()] == ["bob@example.com"]


def test_554_spam_is_permanent(channel, smtp_server):
    smtp_server.fail_next(1, "554 5.7.1 Message rejected as spam")

    error = failure(channel)

    assert error.outcome is Outcome.permanent
    assert error.address_unreachable is False


def test_refused_connection_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    channel = EmailChannel(smtp=SmtpParams("127.0.0.1", port, ssl=False), email_from="noreply@school.example")

    assert failure(channel).outcome is Outcome.transient


def test_drop_after_final_dot_is_uncertain(channel, smtp_server):
    smtp_server.drop_after_final_dot()

    error = failure(channel)

    assert error.outcome is Outcome.uncertain
    # ... and rightly so: the server had the whole message.
    assert [m["dropped"] for m in smtp_server.messages()] == [True]


def test_timeout_after_final_dot_is_uncertain(smtp_server):
    channel = make_channel(smtp_server, timeout_s=0.5)
    smtp_server.stall_after_final_dot()

    assert failure(channel).outcome is Outcome.uncertain


@pytest.mark.parametrize("code, reply, outcome, unreachable", [
    (451, "4.7.1 Try again later", Outcome.transient, False),
    (452, "4.2.2 Mailbox full", Outcome.transient, False),
    (550, "5.1.1 <a@example.com>: Recipient address rejected", Outcome.permanent, True),
    (551, "User not local", Outcome.permanent, True),
    (553, "Mailbox name not allowed", Outcome.permanent, True),
    (550, "5.7.1 Relaying denied", Outcome.permanent, False),
    (554, "5.7.1 Message rejected under suspicion of SPAM", Outcome.permanent, False),
    (552, "5.2.2 Mailbox full", Outcome.permanent, False),
])
def test_rcpt_replies_are_classified_by_the_table(code, reply, outcome, unreachable):
    error = classify_reply("RCPT TO", code, reply.encode())

    assert (error.outcome, error.address_unreachable) == (outcome, unreachable)


def test_a_refused_sender_does_not_mark_the_recipient():
    error = classify_reply("MAIL FROM", 553, b"5.7.1 Sender address rejected")

    assert error.outcome is Outcome.permanent and error.address_unreachable is False


# ---------------------------------------------------------------------- the connection


def test_connection_is_reused(channel, smtp_server):
    for i in range(5):
        channel.send(TO, msg(notification_id=i))

    assert len(smtp_server.messages()) == 5
    assert smtp_server.connections == 1


def test_it_reconnects_when_the_server_closed_the_connection(channel, smtp_server):
    channel.send(TO, msg(notification_id=1))
    assert smtp_server.drop_connections() == 1

    channel.send(TO, msg(notification_id=2))

    assert [m["message_id"] for m in smtp_server.messages()] == ["<notification-1@school.example>",
                                                                 "<notification-2@school.example>"]
    assert smtp_server.connections == 2


def test_each_sending_thread_keeps_its_own_connection(channel, smtp_server):
    errors: list[BaseException] = []

    def send_many(start: int) -> None:
        try:
            for i in range(start, start + 5):
                channel.send(TO, msg(notification_id=i))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send_many, args=(n * 100,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len({m["message_id"] for m in smtp_server.messages()}) == 20
    assert smtp_server.connections == 4  # one per thread, each reused for its five messages
    assert channel.connects == 4


def test_close_quits_and_the_next_send_reconnects(channel, smtp_server):
    channel.send(TO, msg(notification_id=1))
    channel.close()
    channel.send(TO, msg(notification_id=2))

    assert smtp_server.connections == 2


# ---------------------------------------------------------------------- authentication and secrets


@pytest.fixture
def auth_server():
    with FakeSmtpServer(username="vestnik", password=PASSWORD) as server:
        yield server


def test_it_logs_in_when_a_user_is_given(auth_server):
    channel = make_channel(auth_server)

    channel.send(TO, msg())

    assert len(auth_server.messages()) == 1
    assert auth_server.auth_failures == 0


def test_password_never_in_errors(auth_server):
    wrong = SmtpParams("127.0.0.1", auth_server.port, ssl=False, username="vestnik",
                       password=PASSWORD + "-old")
    channel = make_channel(auth_server, smtp=wrong)

    error = failure(channel)

    assert error.outcome is Outcome.permanent
    assert "login refused" in error.reason
    rendered = "".join(traceback.format_exception(error))
    for text in (str(error), repr(error), error.reason, rendered, repr(channel), str(channel.describe())):
        assert PASSWORD not in text
    assert auth_server.auth_failures >= 1  # smtplib tries PLAIN, then LOGIN


def test_password_never_in_errors_after_login(auth_server):
    channel = make_channel(auth_server)
    auth_server.fail_next(1, f"550 5.1.1 no such user (we were told {PASSWORD})", at="RCPT")

    error = failure(channel)

    assert PASSWORD not in str(error) and PASSWORD not in error.reason


def test_address_of_is_the_email():
    channel = EmailChannel(smtp=None, email_from="noreply@school.example")
    client = SimpleNamespace(id=1, email="a@example.com", telegram_chat_id=None)
    assert channel.address_of(client) == "a@example.com"
    assert channel.address_of(SimpleNamespace(id=2, email=None, telegram_chat_id="1")) is None
