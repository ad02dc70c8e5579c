"""EmailChannel with a server that offers PIPELINING (the lean sink): MAIL, RCPT and DATA in one write,
every answer classified as in the step-by-step exchange (tests/unit/test_email_channel.py)."""

from __future__ import annotations

import pytest

from vestnik.shared.config import parse_smtp_url
from vestnik.shared.fakes.smtp import LeanSmtpSink
from vestnik.workers.channels.base import DeliveryError, Outcome, RenderedMessage
from vestnik.workers.channels.email import EmailChannel

TO = "anna@example.com"


@pytest.fixture
def sink():
    server = LeanSmtpSink().start()
    yield server
    server.stop()


@pytest.fixture
def channel(sink):
    ch = EmailChannel(smtp=parse_smtp_url(sink.url), email_from="Vestnik <noreply@school.example>", timeout_s=2)
    yield ch
    ch.close()


def msg(notification_id: int = 42) -> RenderedMessage:
    return RenderedMessage(notification_id=notification_id, text="Здравствуйте!\n.Урок завтра.", subject="Урок",
                           html="<p>Здравствуйте!</p>")


def failure(channel: EmailChannel, to: str = TO) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        channel.send(to, msg())
    return caught.value


def test_messages_go_pipelined_on_one_connection(channel, sink):
    for i in range(3):
        channel.send(TO, msg(i))
    conn = channel._local.conn
    assert "pipelining" in conn.esmtp_features
    assert [m["to"] for m in sink.messages()] == [TO] * 3 and sink.connections == 1


def test_a_refused_recipient_is_permanent_and_the_connection_stays_usable(channel, sink):
    sink.fail_next(1, "550 5.1.1 Mailbox unavailable", at="RCPT")
    error = failure(channel)
    assert error.outcome is Outcome.permanent and error.address_unreachable and "RCPT TO" in error.reason
    channel.send("bob@example.com", msg())
    assert [m["to"] for m in sink.messages()] == ["bob@example.com"] and sink.connections == 1


def test_a_refused_sender_is_named_as_such(channel, sink):
    sink.fail_next(1, "553 5.7.1 Sender address rejected", at="MAIL")
    error = failure(channel)
    assert error.outcome is Outcome.permanent and not error.address_unreachable and "MAIL FROM" in error.reason
    channel.send(TO, msg())
    assert len(sink.messages()) == 1


def test_421_at_rcpt_is_transient_and_drops_the_connection(channel, sink):
    sink.fail_next(1, "421 4.3.2 Service shutting down", at="RCPT")
    assert failure(channel).outcome is Outcome.transient
    channel.send(TO, msg())
    assert sink.connections == 2


def test_the_end_of_data_answers_keep_their_meaning(channel, sink):
    sink.fail_next(1, "451 4.7.1 Try again later")
    assert failure(channel).outcome is Outcome.transient
    sink.drop_after_final_dot()
    assert failure(channel).outcome is Outcome.uncertain


def test_a_connection_the_server_closed_is_reopened_before_anything_is_sent(channel, sink):
    channel.send(TO, msg(1))
    assert sink.drop_connections() == 1
    channel.send(TO, msg(2))
    assert len(sink.messages()) == 2 and sink.connections == 2


def test_a_connection_dropped_at_mail_is_transient_not_uncertain(channel, sink):
    sink.fail_next(1, "DROP", at="MAIL")  # a new connection: not reopened, nothing was sent
    error = failure(channel)
    assert error.outcome is Outcome.transient
    channel.send(TO, msg())
    assert [m["dropped"] for m in sink.messages()] == [False]
