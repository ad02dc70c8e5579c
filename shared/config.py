"""Configuration: one ``Settings`` object, read from ``VESTNIK_*`` variables once
at start and passed explicitly to whatever needs it.

Every field maps to one variable: ``settings.smtp_url`` <-> ``VESTNIK_SMTP_URL``.
A value that does not parse fails at start with a :class:`ConfigError` that
names the variable, never later in the middle of a send.
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from vestnik.shared.errors import ConfigError

PREFIX = "VESTNIK_"


def _env_name(name: str) -> str:
    return PREFIX + name.upper()


@dataclass(frozen=True)
class Settings:
    # Storage and transport
    database_url: str = "sqlite:///vestnik.db"
    broker_url: str = "stub://"  # amqp://guest:guest@host:5672/  or stub:// (in-process); nodes separated by ";"
    # Deliveries of one message without an ack (its worker died each time) before it counts as poison.
    broker_delivery_limit: int = 10
    redis_url: str = ""  # empty: in-memory limiter (one process only)

    # Channels
    telegram_token: str = field(default="", repr=False)
    telegram_api_base: str = "https://api.telegram.org"
    telegram_connect_timeout_s: float = 5.0
    telegram_read_timeout_s: float = 15.0
    smtp_url: str = field(default="", repr=False)  # smtp://user:pass@host:587 or smtps://...:465
    smtp_timeout_s: float = 30.0
    email_from: str = "Vestnik <noreply@example.com>"
    # The webhook channel (docs/configuration.md): outbound POSTs signed with this secret
    webhook_signing_secret: str = field(default="", repr=False)
    webhook_connect_timeout_s: float = 5.0
    webhook_read_timeout_s: float = 10.0
    webhook_allow_private: bool = False  # private, loopback and link-local targets (a test stand only)

    # Web
    secret_key: str = field(default="", repr=False)
    webhook_secrets: str = field(default="", repr=False)  # comma separated: current,previous
    public_url: str = "http://127.0.0.1:8000"
    metrics_token: str = field(default="", repr=False)  # empty: /metrics open (restrict it at the proxy)
    api_rate_per_min: int = 600  # requests per minute per API key (/api/v1); shared through Redis
    # Reverse proxies in front of `vestnik web` whose X-Forwarded-For/-Proto are believed (0: none).
    trusted_proxies: int = 0
    # gunicorn worker processes of `vestnik web` (0: 2 x cores + 1, at most 4; webapp/server.py)
    web_workers: int = 0

    # Client profile (/me): passwordless sign-in and Telegram connection
    telegram_bot_username: str = ""  # without "@"; the deep link is https://t.me/<it>?start=<token>
    client_token_ttl_s: float = 900.0  # sign-in links, codes and Telegram connect links
    client_session_ttl_s: float = 30 * 86400.0
    client_sign_in_per_address: int = 5  # sign-in requests per address per hour
    client_sign_in_per_ip: int = 30  # sign-in requests and wrong codes per IP per hour

    # Limits (see docs/configuration.md for where the defaults come from)
    telegram_rate_per_s: float = 30.0
    telegram_chat_rate_per_s: float = 1.0
    telegram_group_rate_per_min: int = 20
    telegram_group_window_s: float = 60.0  # the group rule's window: 20 per this many seconds
    email_rate_per_min: int = 20
    email_rate_per_hour: int = 300
    email_rate_per_day: int = 480
    webhook_rate_per_s: float = 10.0  # per receiving host

    # Retries
    max_attempts: int = 5
    retry_base_delay_s: float = 10.0
    retry_max_delay_s: float = 900.0
    processing_lease_s: float = 300.0
    redrive_after_s: float = 120.0  # a due row not picked up this long after hand-over is handed over again

    # Scheduler and housekeeping
    scheduler_tick_s: float = 1.0
    outbox_retention_days: float = 7.0

    # Delivery
    delivery_batch_size: int = 100  # rows one worker claims, renders and sends as a batch
    # rows recorded per transaction when their slots are one instant (limits far above the pace): a
    # kill -9 during their sends leaves at most this many "delivery uncertain" (spread slots: 16)
    delivery_chunk_rows: int = 100
    # a handled batch's due rows, at most, that the handling thread sends itself at once (0: pumps send all)
    delivery_inline_rows: int = 16
    telegram_connections: int = 4  # Bot API connections (sending threads) per worker process
    smtp_connections: int = 2  # SMTP connections (sending threads) per worker process
    webhook_connections: int = 4  # webhook connections (sending threads) per worker process
    event_max_retries: int = 20  # an event whose handling fails this many more times is marked failed

    # Relay
    relay_batch_size: int = 100
    relay_poll_interval_s: float = 1.0
    # batches published and not yet handled, at most, before the relay holds new events back for a moment
    # so they go out together (0: never hold; outbox/relay.py, "Batches grow when workers are behind")
    relay_max_in_flight: int = 4

    # Content
    default_locale: str = "ru"
    # What a locale without a template (or a word) falls back to, e.g. uz-latn:ru,ru:en (shared/locales.py)
    locale_fallback: str = "uz-latn:ru,ru:en"
    default_timezone: str = "Europe/Moscow"

    log_level: str = "INFO"
    log_format: str = "text"  # text | json
    worker_metrics_port: int = 0  # >0: Dramatiq's Prometheus exposition on this port (worker processes)

    @property
    def fallback(self) -> dict[str, tuple[str, ...]]:
        """VESTNIK_LOCALE_FALLBACK read: locale -> the locales to try next, in order."""
        from vestnik.shared.locales import parse_fallback

        return parse_fallback(self.locale_fallback)

    @property
    def smtp(self) -> SmtpParams | None:
        return parse_smtp_url(self.smtp_url) if self.smtp_url else None

    @property
    def webhook_secret_list(self) -> list[str]:
        return [s.strip() for s in self.webhook_secrets.split(",") if s.strip()]

    @property
    def telegram_webhook_secret(self) -> str:
        """The secret_token given to setWebhook, derived from the secret key (not stored anywhere)."""
        import hashlib
        import hmac

        return hmac.new(self.secret_key.encode(), b"vestnik-telegram-webhook", hashlib.sha256).hexdigest()

    @property
    def embedded(self) -> bool:
        """True when the broker lives in this process (the demo, some tests)."""
        return self.broker_url.startswith("stub:")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SmtpParams:
    host: str
    port: int
    ssl: bool  # smtps:// (implicit TLS, Yandex 465); smtp:// uses STARTTLS when offered
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_smtp_url(url: str) -> SmtpParams:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("scheme must be smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("host is missing")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError("port is not a number") from exc
    ssl = parts.scheme == "smtps"
    return SmtpParams(
        host=parts.hostname,
        port=port or (465 if ssl else 587),
        ssl=ssl,
        username=urllib.parse.unquote(parts.username) if parts.username else None,
        password=urllib.parse.unquote(parts.password) if parts.password else None,
    )


def _validate(settings: Settings) -> None:
    """Checks that need more than a type: each raises naming its variable."""

    def check(name: str, ok: bool, why: str) -> None:
        if not ok:
            raise ConfigError(_env_name(name), why)

    scheme = settings.database_url.split(":", 1)[0]
    check(
        "database_url",
        scheme.startswith(("sqlite", "postgresql")),
        "must be a sqlite:/// or postgresql:// URL",
    )
    check(
        "broker_url",
        settings.broker_url.startswith("stub:") or all(
            node.strip().startswith(("amqp://", "amqps://")) for node in settings.broker_url.split(";")),
        "must be an amqp:// URL (several nodes separated by ';'), or stub:// for the in-process broker",
    )
    check(
        "redis_url",
        not settings.redis_url or settings.redis_url.startswith(("redis://", "rediss://", "unix://")),
        "must be a redis:// URL or empty",
    )
    check(
        "telegram_api_base",
        settings.telegram_api_base.startswith(("http://", "https://")),
        "must be an http(s):// URL",
    )
    if settings.smtp_url:
        try:
            parse_smtp_url(settings.smtp_url)
        except ValueError as exc:
            # The URL may hold a password: name the problem, never echo the value.
            raise ConfigError(_env_name("smtp_url"), str(exc)) from None
    for name in ("telegram_rate_per_s", "telegram_chat_rate_per_s", "telegram_group_rate_per_min",
                 "telegram_group_window_s", "delivery_batch_size", "delivery_chunk_rows", "telegram_connections",
                 "smtp_connections", "email_rate_per_min",
                 "email_rate_per_hour", "email_rate_per_day", "max_attempts", "relay_batch_size",
                 "processing_lease_s", "relay_poll_interval_s", "redrive_after_s", "scheduler_tick_s",
                 "outbox_retention_days", "client_token_ttl_s", "client_session_ttl_s",
                 "client_sign_in_per_address", "client_sign_in_per_ip", "broker_delivery_limit",
                 "api_rate_per_min", "webhook_rate_per_s", "webhook_connections", "webhook_connect_timeout_s",
                 "webhook_read_timeout_s"):
        check(name, getattr(settings, name) > 0, "must be greater than zero")
    check("retry_base_delay_s", settings.retry_base_delay_s >= 0, "must not be negative")
    check("delivery_inline_rows", settings.delivery_inline_rows >= 0, "must not be negative")
    check("relay_max_in_flight", settings.relay_max_in_flight >= 0, "must not be negative")
    check("web_workers", settings.web_workers >= 0, "must not be negative")
    from vestnik.shared import locales

    check("default_locale", locales.match(settings.default_locale) == settings.default_locale,
          f"must be one of {locales.supported_list()}")
    try:
        locales.parse_fallback(settings.locale_fallback)
    except locales.LocaleError as exc:
        raise ConfigError(_env_name("locale_fallback"), str(exc)) from None
    check("log_format", settings.log_format in ("text", "json"), "must be text or json")
    check("log_level", settings.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
          "must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    check("trusted_proxies", 0 <= settings.trusted_proxies <= 10, "must be the number of proxies, 0 to 10")
    check(
        "telegram_bot_username",
        not settings.telegram_bot_username or re.fullmatch(r"\w{5,32}", settings.telegram_bot_username) is not None,
        "must be the bot's username without '@' (5-32 letters, digits or underscores)",
    )


_SECRET_FIELDS = ("metrics_token", "telegram_token", "smtp_url", "secret_key", "webhook_secrets", "database_url",
                  "broker_url", "redis_url", "webhook_signing_secret")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read ``VESTNIK_*`` variables into Settings; raise ConfigError naming a bad one."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        name = _env_name(f.name)
        if name not in environ:
            continue
        raw = environ[name].strip()
        kind = type(f.default)
        try:
            if kind is bool:
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                values[f.name] = raw.lower() in ("1", "true", "yes", "on")
            elif kind is int:
                values[f.name] = int(raw)
            elif kind is float:
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        except ValueError:
            shown = "" if f.name in _SECRET_FIELDS else f" (got {raw!r})"
            expected = "a number" if kind in (int, float) else "true or false"
            raise ConfigError(name, f"must be {expected}{shown}") from None
    values.update(overrides)
    settings = Settings(**values)
    _validate(settings)
    return settings


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in the settings, for log redaction."""
    found = [settings.telegram_token, settings.secret_key, *settings.webhook_secret_list,
             settings.webhook_signing_secret]
    if settings.smtp and settings.smtp.password:
        found.append(settings.smtp.password)
    for url in (settings.database_url, *settings.broker_url.split(";"), settings.redis_url):
        password = urllib.parse.urlsplit(url).password if "://" in url else None
        if password:
            found.append(urllib.parse.unquote(password))
    return [s for s in found if s and len(s) >= 4]
