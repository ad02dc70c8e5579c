"""HMAC signatures of webhooks, inbound (verified) and outbound (the webhook channel signs).

A sender signs ``f"{timestamp}.{raw body}"`` with HMAC-SHA256 and sends

    X-Vestnik-Timestamp: 1795000000
    X-Vestnik-Signature: sha256=<hex digest>

We accept the signature of any configured secret (``VESTNIK_WEBHOOK_SECRETS``
= ``current,previous`` during a rotation), only within ``WINDOW_S`` of our
clock, compared in constant time.  Replays inside the window are absorbed by
idempotency on the provider's event id.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence

from vestnik.shared import bounds
from vestnik.shared.bounds import BoundsError

WINDOW_S = 300
TIMESTAMP_HEADER = "X-Vestnik-Timestamp"
SIGNATURE_HEADER = "X-Vestnik-Signature"
#: a timestamp beyond this (year 2286) is not Unix seconds
MAX_TIMESTAMP = 10**10
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}", re.ASCII)


class SignatureError(Exception):
    """Why a webhook's signature was refused (never includes a secret)."""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers for a signed request (used by senders, the demo and the tests)."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: f"sha256={digest}"}


def verify(headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float | None = None) -> None:
    if not secrets:
        raise SignatureError("webhooks are not configured (VESTNIK_WEBHOOK_SECRETS is empty)")
    ts_raw = headers.get(TIMESTAMP_HEADER)
    sig_raw = headers.get(SIGNATURE_HEADER)
    if not ts_raw or not sig_raw:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    # Headers are whatever a stranger sends: bounded and ASCII before any arithmetic or comparison.
    try:
        ts = bounds.integer(ts_raw, TIMESTAMP_HEADER, minimum=0, maximum=MAX_TIMESTAMP)
    except BoundsError:
        raise SignatureError("timestamp must be Unix seconds (ASCII digits)") from None
    now = time.time() if now is None else now
    if abs(now - ts) > WINDOW_S:
        raise SignatureError(f"timestamp outside the {WINDOW_S}-second window")
    if not _SIGNATURE.fullmatch(sig_raw):
        raise SignatureError("signature must be sha256=<64 lowercase hex digits>")
    given = sig_raw.removeprefix("sha256=").encode("ascii")
    for secret in secrets:
        expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected.encode("ascii"), given):
            return
    raise SignatureError("signature does not match")
