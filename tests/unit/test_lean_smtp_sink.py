"""The benches' lean SMTP sink keeps the same ledger and answers as the aiosmtpd sink the tests use:
the same messages give the same records, and scripted replies the same outcomes at the sender."""

from __future__ import annotations

import smtplib

import pytest

from vestnik.shared.config import parse_smtp_url
from vestnik.shared.fakes.smtp import FakeSmtpServer, LeanSmtpSink
from vestnik.workers.channels.base import Attachment, DeliveryError, Outcome, RenderedMessage
from vestnik.workers.channels.email import EmailChannel

TO = "anna@example.com"
MESSAGES = [
    RenderedMessage(notification_id=1, text="Здравствуйте!\nУрок завтра в 18:00.", subject="Напоминание"),
    RenderedMessage(notification_id=2, text="a\n.starts with a dot\n..two dots\n.", subject="Dots",
                    html="<p>x</p>\n.<p>y</p>", headers={"List-Unsubscribe": "<https://s.example/u/1>"}),
    RenderedMessage(notification_id=3, text="", subject="Empty text"),
    RenderedMessage(notification_id=4, text="See the file", subject="With a file",
                    attachment=Attachment(filename="plan.pdf", content=b"%PDF-1.4 ...", mime_type="application/pdf")),
]


def channel_to(sink: FakeSmtpServer) -> EmailChannel:
    return EmailChannel(smtp=parse_smtp_url(sink.url), email_from="Vestnik <noreply@school.example>", timeout_s=2)


@pytest.fixture
def lean():
    with LeanSmtpSink() as sink:
        yield sink


def _fields(record: dict) -> dict:
    return {k: record[k] for k in ("from", "to", "rcpt_tos", "subject", "message_id", "text", "html", "dropped")} | {
        "attachments": [(a["filename"], a["mime_type"], a["content"]) for a in record["attachments"]]}


def test_the_same_messages_give_the_same_ledger(lean, smtp_server):
    for sink in (lean, smtp_server):
        channel = channel_to(sink)
        for message in MESSAGES:
            channel.send(TO, message)
        channel.close()
    mine, theirs = lean.messages(), smtp_server.messages()
    assert [_fields(m) for m in mine] == [_fields(m) for m in theirs]
    # Apart from the Date header and the boundaries' random part, the raw bytes are the same too.
    assert [len(m["raw"]) for m in mine] == [len(m["raw"]) for m in theirs]
    assert lean.count() == len(MESSAGES) and len(lean.times()) == len(MESSAGES)


@pytest.mark.parametrize(("reply", "at", "outcome"), [
    ("451 4.7.1 Try again later", "DATA", Outcome.transient),
    ("550 5.1.1 Mailbox unavailable", "RCPT", Outcome.permanent),
    ("421 4.3.0 Too busy", "MAIL", Outcome.transient),
])
def test_scripted_replies_reach_the_sender(lean, reply, at, outcome):
    channel = channel_to(lean)
    lean.fail_next(1, reply, at=at)
    with pytest.raises(DeliveryError) as caught:
        channel.send(TO, MESSAGES[0])
    assert caught.value.outcome == outcome
    channel.send(TO, MESSAGES[0])  # the next one goes through
    assert lean.count() == 1
    channel.close()


def test_drop_after_the_final_dot_is_uncertain_and_kept_as_dropped(lean):
    channel = channel_to(lean)
    lean.drop_after_final_dot()
    with pytest.raises(DeliveryError) as caught:
        channel.send(TO, MESSAGES[0])
    assert caught.value.outcome == Outcome.uncertain
    [kept] = lean.messages()
    assert kept["dropped"] and lean.count(include_dropped=False) == 0
    channel.close()


def test_dropped_connections_are_reopened_by_the_sender(lean):
    channel = channel_to(lean)
    channel.send(TO, MESSAGES[0])
    assert lean.drop_connections() == 1
    channel.send(TO, MESSAGES[0])
    assert lean.count() == 2 and lean.connections == 2
    channel.close()


def test_pipelined_commands_are_answered_in_order(lean):
    with smtplib.SMTP(lean.host, lean.port, timeout=5) as client:
        client.ehlo()
        client.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n")
        assert [client.getreply()[0] for _ in range(4)] == [250, 250, 250, 354]
        client.send(b"Subject: hi\r\n\r\n..dot\r\n.\r\n")
        assert client.getreply()[0] == 250
    [record] = lean.messages()
    assert record["rcpt_tos"] == ["b@example.com", "c@example.com"]
    assert record["raw"] == b"Subject: hi\r\n\r\n.dot\r\n"
