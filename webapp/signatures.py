"""HMAC signatures of webhooks: the rule lives in ``vestnik.shared.signatures`` (the outbound
``webhook`` channel signs with it too); this name stays for the inbound routes and their callers."""

from vestnik.shared.signatures import (  # noqa: F401 - re-exported
    MAX_TIMESTAMP,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WINDOW_S,
    SignatureError,
    sign,
    verify,
)
