"""HMAC signatures of inbound webhooks.

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
import time
from collections.abc import Mapping, Sequence

WINDOW_S = 300
TIMESTAMP_HEADER = "X-Vestnik-Timestamp"
SIGNATURE_HEADER = "X-Vestnik-Signature"


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
    try:
        ts = int(ts_raw)
    except ValueError:
        raise SignatureError("timestamp is not an integer") from None
    now = time.time() if now is None else now
    if abs(now - ts) > WINDOW_S:
        raise SignatureError(f"timestamp outside the {WINDOW_S}-second window")
    if not sig_raw.startswith("sha256="):
        raise SignatureError("signature must be sha256=<hex>")
    given = sig_raw.removeprefix("sha256=")
    for secret in secrets:
        expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, given):
            return
    raise SignatureError("signature does not match")
