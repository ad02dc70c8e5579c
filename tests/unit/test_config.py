"""Settings: read from VESTNIK_* once; a bad value names its variable."""

from __future__ import annotations

import pytest

from vestnik.shared.config import load_settings, parse_smtp_url, secrets_of
from vestnik.shared.errors import ConfigError


def test_defaults_are_the_embedded_mode():
    s = load_settings({})
    assert s.embedded and s.database_url.startswith("sqlite")


def test_values_are_parsed_by_type():
    s = load_settings({"VESTNIK_TELEGRAM_RATE_PER_S": "25", "VESTNIK_MAX_ATTEMPTS": "3",
                       "VESTNIK_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/"})
    assert s.telegram_rate_per_s == 25.0 and s.max_attempts == 3 and not s.embedded


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"VESTNIK_MAX_ATTEMPTS": "three"}, "VESTNIK_MAX_ATTEMPTS"),
        ({"VESTNIK_MAX_ATTEMPTS": "0"}, "VESTNIK_MAX_ATTEMPTS"),
        ({"VESTNIK_DATABASE_URL": "mysql://x"}, "VESTNIK_DATABASE_URL"),
        ({"VESTNIK_BROKER_URL": "redis://x"}, "VESTNIK_BROKER_URL"),
        ({"VESTNIK_SMTP_URL": "http://mail"}, "VESTNIK_SMTP_URL"),
        ({"VESTNIK_TELEGRAM_API_BASE": "api.telegram.org"}, "VESTNIK_TELEGRAM_API_BASE"),
    ],
)
def test_bad_value_fails_naming_the_variable(env, variable):
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert err.value.variable == variable
    assert str(err.value).startswith(variable)


def test_smtp_password_never_appears_in_the_error():
    with pytest.raises(ConfigError) as err:
        load_settings({"VESTNIK_SMTP_URL": "ftp://user:hunter2secret@host:25"})
    assert "hunter2secret" not in str(err.value)


def test_smtp_url_forms():
    yandex = parse_smtp_url("smtps://robot%40school.ru:p%40ss@smtp.yandex.ru:465")
    assert (yandex.host, yandex.port, yandex.ssl) == ("smtp.yandex.ru", 465, True)
    assert yandex.username == "robot@school.ru" and yandex.password == "p@ss"
    assert parse_smtp_url("smtp://localhost").port == 587


def test_secrets_are_collected_for_redaction():
    s = load_settings({"VESTNIK_TELEGRAM_TOKEN": "123:ABCDEF", "VESTNIK_SMTP_URL": "smtps://u:mailpass@h:465",
                       "VESTNIK_DATABASE_URL": "postgresql://v:dbpass@h/db", "VESTNIK_SECRET_KEY": "k" * 32})
    assert {"123:ABCDEF", "mailpass", "dbpass", "k" * 32} <= set(secrets_of(s))
