"""The webhook channel against a local HTTP server that answers each error class."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.fakes.webhook_receiver import Receiver, receiving
from vestnik.shared.signatures import verify
from vestnik.workers.channels.base import DeliveryError, Outcome, RenderedMessage
from vestnik.workers.channels.webhook import WebhookChannel, check_url, payload

SECRET = "s" * 32


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as server:
        yield server


def channel(**kw: object) -> WebhookChannel:
    return WebhookChannel(secret=SECRET, allow_private=True, read_timeout_s=kw.pop("read_timeout_s", 5), **kw)


MESSAGE = RenderedMessage(notification_id=41, text="Урок отменён", subject="Отмена", html="<p>Урок отменён</p>",
                          event_type="lesson_cancelled", client_id=7, locale="ru")


def test_a_2xx_is_sent_with_the_rendered_message_signed_like_inbound_webhooks(receiver):
    ch = channel()
    provider_id = ch.send(f"{receiver.url}/hook?k=1", MESSAGE)
    [(path, headers, body)] = receiver.received
    assert path == "/hook?k=1" and provider_id.startswith("webhook:41:")
    verify(headers, body, [SECRET])  # the same scheme as docs/webhooks.md: raises when it differs
    assert json.loads(body) == {"event_type": "lesson_cancelled", "notification_id": 41, "client_id": 7,
                                "locale": "ru", "subject": "Отмена", "text": "Урок отменён",
                                "html": "<p>Урок отменён</p>"}
    assert headers["Content-Type"].startswith("application/json")


def test_the_connection_is_kept_between_messages(receiver):
    ch = channel()
    for _ in range(3):
        ch.send(f"{receiver.url}/hook", MESSAGE)
    assert len(receiver.received) == 3 and ch.connects == 1
    ch.close()


@pytest.mark.parametrize(("status", "outcome", "unreachable"), [
    (429, Outcome.rate_limited, False),
    (408, Outcome.transient, False),
    (500, Outcome.transient, False),
    (503, Outcome.transient, False),
    (400, Outcome.permanent, False),
    (404, Outcome.permanent, False),
    (410, Outcome.permanent, True),
])
def test_each_answer_class(receiver, status, outcome, unreachable):
    with pytest.raises(DeliveryError) as err:
        channel().send(f"{receiver.url}/{status}", MESSAGE)
    assert err.value.outcome is outcome and err.value.address_unreachable is unreachable
    assert f"HTTP {status}" in err.value.reason
    if status == 429:
        assert err.value.retry_after_s == 7


def test_no_answer_after_the_request_was_written_is_uncertain_never_transient(receiver):
    with pytest.raises(DeliveryError) as err:
        channel(read_timeout_s=0.3).send(f"{receiver.url}/hang", MESSAGE)
    assert err.value.outcome is Outcome.uncertain
    assert len(receiver.received) == 1  # it did arrive: a resend would be a duplicate


def test_a_refused_connection_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once it is closed
    with pytest.raises(DeliveryError) as err:
        channel().send(f"http://127.0.0.1:{port}/hook", MESSAGE)
    assert err.value.outcome is Outcome.transient


def test_without_a_secret_every_send_fails_naming_the_variable():
    with pytest.raises(DeliveryError) as err:
        WebhookChannel(secret="").send("https://93.184.216.34/x", MESSAGE)
    assert err.value.outcome is Outcome.permanent and "VESTNIK_WEBHOOK_SIGNING_SECRET" in err.value.reason


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/x", "http://10.1.2.3/x", "http://192.168.0.10/x",
                                 "http://169.254.169.254/latest/meta-data", "http://[::1]/x", "http://localhost/x",
                                 "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x", "http://100.64.0.1/x"])
def test_private_loopback_and_link_local_targets_are_refused_unless_allowed(url):
    strict = WebhookChannel(secret=SECRET)
    with pytest.raises(ValueError, match="VESTNIK_WEBHOOK_ALLOW_PRIVATE"):
        strict.check_address(url)
    with pytest.raises(DeliveryError) as err:  # and at send time too (DNS may have changed since)
        strict.send(url, MESSAGE)
    assert err.value.outcome is Outcome.permanent and err.value.address_unreachable
    assert WebhookChannel(secret=SECRET, allow_private=True).check_address(url) == url


def test_every_address_of_a_name_is_checked():
    ch = WebhookChannel(secret=SECRET, resolve=lambda host, port: ["93.184.216.34", "10.0.0.5"])
    with pytest.raises(ValueError, match="10.0.0.5"):
        ch.check_address("https://crm.example.com/hook")
    public = WebhookChannel(secret=SECRET, resolve=lambda host, port: ["93.184.216.34"])
    assert public.check_address(" https://crm.example.com/hook ") == "https://crm.example.com/hook"


@pytest.mark.parametrize(("url", "why"), [
    ("", "is empty"), ("ftp://example.com/x", "http:// or https://"), ("https:///x", "no host"),
    ("https://user:pw@example.com/x", "user name or password"), ("https://example.com/x#y", "fragment"),
    ("https://exa mple.com/x", "spaces"), ("https://example.com:99999/x", "not a URL"),
    ("https://example.com/" + "x" * 2100, "longer than"),
])
def test_bad_urls_are_refused_saying_why(url, why):
    with pytest.raises(ValueError, match=why):
        check_url(url)


def test_limits_are_per_host():
    from vestnik.shared.config import Settings

    rules = WebhookChannel.limit_rules(Settings(webhook_rate_per_s=5))
    assert rules.overall == ()
    [rule] = rules.per_key("crm.example.com")
    assert rule.limit / rule.window_s == 5
    assert WebhookChannel(secret=SECRET).limit_key("https://CRM.example.com:8443/a") == "crm.example.com"


def test_the_payload_leaves_out_nothing_the_template_gave():
    assert payload(RenderedMessage(notification_id=1, text="t"))["subject"] is None
