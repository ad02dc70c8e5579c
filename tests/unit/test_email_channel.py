"""EmailChannel against a real SMTP server (aiosmtpd): one test per provider answer."""

from __future__ import annotations

import pytest

from shared.config import parse_smtp_url
from shared.fakes.smtp import FakeSmtpServer
from workers.channels.base import DeliveryError, Outcome, RenderedMessage
from workers.channels.email import EmailChannel


@pytest.fixture
def channel(smtp_server):
    ch = EmailChannel(smtp=parse_smtp_url(smtp_server.url), email_from="School <robot@school.test>", timeout_s=2)
    yield ch
    ch.close()


def msg(subject="Урок отменён", **kw) -> RenderedMessage:
    return RenderedMessage(notification_id=77, subject=subject, text="Plain text", html="<p><b>HTML</b></p>", **kw)


def fails(channel, address="anna@example.com", message=None) -> DeliveryError:
    with pytest.raises(DeliveryError) as err:
        channel.send(address, message or msg())
    return err.value


def test_multipart_alternative_has_text_and_html_and_a_message_id(channel, smtp_server):
    external = channel.send("anna@example.com", msg(headers={"List-Unsubscribe": "<https://x.example/u>"}))
    [m] = smtp_server.messages()
    assert m["to"] == "anna@example.com" and m["subject"] == "Урок отменён"
    assert m["text"].strip() == "Plain text" and "<b>HTML</b>" in m["html"]
    assert m["message"].get_content_type() == "multipart/alternative"
    assert external == m["message_id"] == "<notification-77@school.test>"
    assert m["message"]["List-Unsubscribe"] == "<https://x.example/u>"
    assert b"\r\n" in m["raw"] and b"\n\n" not in m["raw"].replace(b"\r\n", b"")


def test_connection_is_reused(channel, smtp_server):
    for _ in range(3):
        channel.send("anna@example.com", msg())
    assert len(smtp_server.messages()) == 3
    assert channel._local.conn is not None  # one connection kept for the next message


def test_451_is_transient(channel, smtp_server):
    smtp_server.fail_next(1, "451 4.7.1 Try again later")
    err = fails(channel)
    assert err.outcome is Outcome.transient and "451" in err.reason


def test_550_is_permanent_and_marks_address(channel, smtp_server):
    smtp_server.fail_next(1, "550 5.1.1 Mailbox unavailable", at="RCPT")
    err = fails(channel)
    assert err.outcome is Outcome.permanent and err.address_unreachable
    channel.send("anna@example.com", msg())  # the connection is still usable afterwards


def test_554_spam_is_permanent_but_keeps_the_address(channel, smtp_server):
    smtp_server.fail_next(1, "554 5.7.1 Message rejected as spam")
    err = fails(channel)
    assert err.outcome is Outcome.permanent and not err.address_unreachable


def test_drop_after_final_dot_is_uncertain(channel, smtp_server):
    smtp_server.fail_next(1, "DROP")
    err = fails(channel)
    assert err.outcome is Outcome.uncertain
    channel.send("anna@example.com", msg())  # reconnects for the next message


@pytest.mark.parametrize("bad", ["Hi\r\nBcc: victim@example.com", "Hi\nX-Injected: 1"])
def test_crlf_in_subject_is_rejected(channel, smtp_server, bad):
    err = fails(channel, message=msg(subject=bad))
    assert err.outcome is Outcome.permanent and "line break" in err.reason
    assert smtp_server.messages() == []


@pytest.mark.parametrize("address", ["a@example.com, victim@example.com", "a@example.com\r\nBcc: v@x.io", "nope"])
def test_only_a_single_address_is_accepted(channel, smtp_server, address):
    assert fails(channel, address=address).outcome is Outcome.permanent
    assert smtp_server.messages() == []


def test_refused_connection_is_transient():
    ch = EmailChannel(smtp=parse_smtp_url("smtp://127.0.0.1:9"), email_from="x@school.test", timeout_s=1)
    assert fails(ch).outcome is Outcome.transient


def test_auth_and_password_never_in_errors():
    with FakeSmtpServer(username="robot", password="PASSWORD-CANARY") as server:
        good = EmailChannel(smtp=parse_smtp_url(server.url), email_from="robot@school.test", timeout_s=2)
        good.send("anna@example.com", msg())
        bad = EmailChannel(smtp=parse_smtp_url(f"smtp://robot:WRONG-CANARY@127.0.0.1:{server.port}"),
                           email_from="robot@school.test", timeout_s=2)
        err = fails(bad)
    assert err.outcome is Outcome.permanent and "login refused" in err.reason
    assert "CANARY" not in str(err)
