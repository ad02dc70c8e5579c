"""Webhook signatures (webapp/signatures.py): the rule itself, without a web app.

The integration tests (test_webhooks.py, test_hostile_input.py, test_boundaries.py) send signed
requests through the app; these pin each part of the rule, so that a change to any of them fails
here: what is signed, the window's width and edges, the header formats, rotation, the messages.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from vestnik.shared import signatures  # the rule (webapp.signatures re-exports it)
from vestnik.webapp.signatures import (
    MAX_TIMESTAMP,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WINDOW_S,
    SignatureError,
    sign,
    verify,
)

SECRET = "whsec-current"
OLD = "whsec-previous"
BODY = b'{"event_id": "e-1", "amount": "100.00"}'
NOW = 1_795_000_000


def expected(secret: str, ts: int, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()


def refused(headers, body=BODY, secrets=(SECRET,), now=NOW) -> str:
    with pytest.raises(SignatureError) as caught:
        verify(headers, body, list(secrets), now=now)
    return str(caught.value)


def test_the_headers_are_named_as_documented_and_the_window_is_five_minutes():
    assert (TIMESTAMP_HEADER, SIGNATURE_HEADER, WINDOW_S) == ("X-Vestnik-Timestamp", "X-Vestnik-Signature", 300)
    assert MAX_TIMESTAMP == 10**10


def test_sign_is_hmac_sha256_over_the_timestamp_a_dot_and_the_raw_body():
    assert sign(SECRET, BODY, NOW) == {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: expected(SECRET, NOW, BODY)}


def test_sign_without_a_timestamp_uses_the_clock(monkeypatch):
    monkeypatch.setattr(signatures.time, "time", lambda: NOW + 0.7)
    assert sign(SECRET, BODY) == sign(SECRET, BODY, NOW)


def test_a_signed_request_is_accepted_and_verify_uses_the_clock_by_default(monkeypatch):
    assert verify(sign(SECRET, BODY, NOW), BODY, [SECRET], now=NOW) is None
    monkeypatch.setattr(signatures.time, "time", lambda: NOW + WINDOW_S)
    assert verify(sign(SECRET, BODY, NOW), BODY, [SECRET]) is None
    monkeypatch.setattr(signatures.time, "time", lambda: NOW + WINDOW_S + 1)
    with pytest.raises(SignatureError, match="window"):
        verify(sign(SECRET, BODY, NOW), BODY, [SECRET])


@pytest.mark.parametrize("skew", [-WINDOW_S, -1, 0, 1, WINDOW_S])
def test_the_window_includes_both_edges(skew):
    verify(sign(SECRET, BODY, NOW), BODY, [SECRET], now=NOW + skew)


@pytest.mark.parametrize("skew", [-WINDOW_S - 1, WINDOW_S + 1, WINDOW_S * 10, -WINDOW_S * 10])
def test_outside_the_window_is_refused_naming_it(skew):
    assert refused(sign(SECRET, BODY, NOW), now=NOW + skew) == "timestamp outside the 300-second window"


def test_both_secrets_of_a_rotation_are_accepted_and_no_other():
    for secret in (SECRET, OLD):
        verify(sign(secret, BODY, NOW), BODY, [SECRET, OLD], now=NOW)
    assert refused(sign("someone-else", BODY, NOW), secrets=(SECRET, OLD)) == "signature does not match"
    assert refused(sign(OLD, BODY, NOW), secrets=(SECRET,)) == "signature does not match"


@pytest.mark.parametrize("change", ["body", "timestamp", "secret"])
def test_changing_what_is_signed_breaks_the_signature(change):
    headers = sign(SECRET, BODY, NOW)
    body = BODY
    if change == "body":
        body = BODY.replace(b"100.00", b"900.00")
    elif change == "timestamp":
        headers = {**headers, TIMESTAMP_HEADER: str(NOW - 1)}
    else:
        headers = sign(SECRET + "x", BODY, NOW)
    assert refused(headers, body=body) == "signature does not match"


def test_no_secret_configured_refuses_everything_saying_so():
    assert refused(sign(SECRET, BODY, NOW), secrets=()) == (
        "webhooks are not configured (VESTNIK_WEBHOOK_SECRETS is empty)")


@pytest.mark.parametrize("missing", [TIMESTAMP_HEADER, SIGNATURE_HEADER])
def test_a_missing_header_is_named(missing):
    headers = {k: v for k, v in sign(SECRET, BODY, NOW).items() if k != missing}
    assert refused(headers) == "missing X-Vestnik-Timestamp or X-Vestnik-Signature header"


@pytest.mark.parametrize("empty", [TIMESTAMP_HEADER, SIGNATURE_HEADER])
def test_an_empty_header_counts_as_missing(empty):
    headers = {**sign(SECRET, BODY, NOW), empty: ""}
    assert refused(headers) == "missing X-Vestnik-Timestamp or X-Vestnik-Signature header"


@pytest.mark.parametrize("ts", ["yesterday", "-1", "1e9", "١٧٩٥٠٠٠٠٠٠", str(MAX_TIMESTAMP + 1), "1" * 4000, "17.5"])
def test_a_timestamp_that_is_not_unix_seconds_is_refused(ts):
    headers = {**sign(SECRET, BODY, NOW), TIMESTAMP_HEADER: ts}
    assert refused(headers) == "timestamp must be Unix seconds (ASCII digits)"


def test_the_largest_timestamp_is_read_as_a_number_not_refused_as_malformed():
    headers = {**sign(SECRET, BODY, NOW), TIMESTAMP_HEADER: str(MAX_TIMESTAMP)}
    assert refused(headers, now=MAX_TIMESTAMP + WINDOW_S + 1) == "timestamp outside the 300-second window"
    assert refused({**headers, TIMESTAMP_HEADER: "0"}, now=WINDOW_S + 1) == "timestamp outside the 300-second window"
    verify(sign(SECRET, BODY, MAX_TIMESTAMP), BODY, [SECRET], now=MAX_TIMESTAMP)


@pytest.mark.parametrize("sig", [
    "sha256=" + "A" * 64,  # upper case
    "sha256=" + "a" * 63, "sha256=" + "a" * 65, "sha1=" + "a" * 40, "a" * 64, "sha256=" + "g" * 64,
    "sha256=" + "é" * 64, " sha256=" + "a" * 64, "SHA256=" + "a" * 64,
])
def test_a_signature_in_another_format_is_refused_as_such(sig):
    headers = {**sign(SECRET, BODY, NOW), SIGNATURE_HEADER: sig}
    assert refused(headers) == "signature must be sha256=<64 lowercase hex digits>"


def test_no_message_repeats_a_secret():
    for headers in (sign(SECRET, BODY, NOW), sign(SECRET, BODY, NOW - 10 * WINDOW_S), {}):
        try:
            verify(headers, BODY + b"x", [SECRET, OLD], now=NOW)
        except SignatureError as error:
            assert SECRET not in str(error) and OLD not in str(error)
