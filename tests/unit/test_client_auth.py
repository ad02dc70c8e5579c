"""One-time client secrets: the Telegram start parameter's format and signature, purpose-bound hashes."""

from __future__ import annotations

import re

from vestnik.shared import client_auth
from vestnik.shared.models import ClientTokenPurpose


def test_connect_token_fits_a_telegram_start_parameter_and_its_signature_is_checked():
    key = "k" * 32
    nonce = "n" * 22
    token = nonce + client_auth._signature(key, nonce)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", token)  # what t.me/<bot>?start= accepts
    assert client_auth.connect_nonce(key, token) == nonce
    assert client_auth.connect_nonce("other-key" * 4, token) is None
    assert client_auth.connect_nonce(key, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert client_auth.connect_nonce(key, nonce) is None
    assert client_auth.connect_nonce(key, "") is None


def test_a_secret_hashes_differently_for_each_purpose_and_key():
    hashes = {client_auth.digest(key, purpose, "same-secret") for key in ("a" * 32, "b" * 32)
              for purpose in ClientTokenPurpose}
    assert len(hashes) == 2 * len(ClientTokenPurpose)
    assert client_auth.digest("a" * 32, ClientTokenPurpose.session, "x") == client_auth.digest("a" * 32, "session", "x")


def test_throttle_scopes_do_not_store_the_address_in_clear():
    scope = client_auth.address_scope("k" * 32, " Anna@Example.com ")
    assert "anna" not in scope.lower() and scope == client_auth.address_scope("k" * 32, "anna@example.com")


def test_access_logs_mask_sign_in_tokens():
    from vestnik.shared.config import Settings
    from vestnik.webapp.access_log import redact
    from vestnik.webapp.server import gunicorn_options

    line = 'GET /me/login/t/AbC-12_xyz?x=1 HTTP/1.1 "http://site/me/login/t/AbC-12_xyz"'
    assert redact(line) == 'GET /me/login/t/••••?x=1 HTTP/1.1 "http://site/me/login/t/••••"'
    assert redact("GET /me/notifications/12 HTTP/1.1") == "GET /me/notifications/12 HTTP/1.1"
    options = gunicorn_options(Settings(), "127.0.0.1", 8000)
    assert options["logger_class"] == "vestnik.webapp.access_log.RedactingLogger"
