"""VESTNIK_TRUSTED_PROXIES: the client's address behind a reverse proxy, and never a forged one."""

from __future__ import annotations

import pytest
from flask import request

from vestnik.shared.config import Settings, load_settings
from vestnik.shared.errors import ConfigError
from vestnik.webapp import create_app


def _seen(trusted: int, headers: dict[str, str]) -> tuple[str, str]:
    app = create_app(Settings(secret_key="k" * 32, database_url="sqlite://", trusted_proxies=trusted),
                     config={"TESTING": True})

    @app.get("/_whoami")
    def whoami():
        return {"addr": request.remote_addr, "scheme": request.scheme}

    answer = app.test_client().get("/_whoami", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.2"}).json
    return answer["addr"], answer["scheme"]


def test_without_trusted_proxies_forwarded_headers_are_ignored():
    assert _seen(0, {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}) == ("10.0.0.2", "http")


def test_one_trusted_proxy_gives_the_client_address_it_appended():
    # The client forged the first entry; the proxy appended the real address.
    headers = {"X-Forwarded-For": "198.51.100.66, 203.0.113.9", "X-Forwarded-Proto": "https"}
    assert _seen(1, headers) == ("203.0.113.9", "https")


def test_two_trusted_proxies_take_the_second_entry_from_the_right():
    assert _seen(2, {"X-Forwarded-For": "198.51.100.66, 203.0.113.9, 10.0.0.1"})[0] == "203.0.113.9"


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_a_bad_value_is_refused_at_start_naming_the_variable(value):
    with pytest.raises(ConfigError, match="VESTNIK_TRUSTED_PROXIES"):
        load_settings({"VESTNIK_TRUSTED_PROXIES": value})
