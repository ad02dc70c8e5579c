"""Webhook: the rendered message as a signed JSON POST to the client's URL.

A CRM, or a client's own system, receives notifications this way.  The body is

    {"event_type": ..., "notification_id": ..., "client_id": ..., "locale": ...,
     "subject": ... or null, "text": ..., "html": ...}

signed like Vestnik's inbound webhooks (docs/webhooks.md): ``X-Vestnik-Timestamp``
and ``X-Vestnik-Signature: sha256=hex(HMAC-SHA256(secret, "{timestamp}." + body))``
with ``VESTNIK_WEBHOOK_SIGNING_SECRET``.

Why it looks like this:

- **The address is a URL the client gave, so it is checked twice**: when it is
  saved (``check_address``: http or https, a host, no credentials) and before
  every send, where the host is resolved and *every* address must be public
  (not private, loopback, link-local, multicast or reserved) unless
  ``VESTNIK_WEBHOOK_ALLOW_PRIVATE`` is on.  The connection then goes to the
  address that was checked (the Host header and TLS name stay the URL's), so a
  name that resolves differently a moment later (DNS rebinding) cannot reach
  an internal service.
- **``http.client`` with keep-alive**, one connection per sending thread and
  target (scheme, host, port, checked address), like the Telegram channel.
- **Errors by class**: 2xx sent; 429 rate limited (its ``Retry-After``);
  408, 5xx, a refused or timed-out connection transient; a timeout or a lost
  connection *after the request was written* uncertain (the receiver may have
  acted: never resent blindly); other 4xx permanent, and 410 Gone marks the
  address unreachable (the receiver says it is gone for good).
- **Limits are per host** (``VESTNIK_WEBHOOK_RATE_PER_S``): one slow receiver
  does not hold up the others, and no receiver gets more than it allows.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import select
import socket
import ssl
import threading
import urllib.parse
from typing import TYPE_CHECKING, Any, ClassVar

from vestnik.shared.signatures import sign
from vestnik.workers.channels.base import Addressable, Channel, DeliveryError, RenderedMessage
from vestnik.workers.limits import ChannelRules, Rule

if TYPE_CHECKING:
    from vestnik.shared.config import Settings

MAX_URL = 2048
#: how much of a receiver's answer goes into a reason (it is the receiver's text, shown in the history)
_ANSWER_CHARS = 200


class WebhookChannel(Channel):
    """POSTs rendered messages as signed JSON to the client's http(s) URL."""

    name: ClassVar[str] = "webhook"
    title: ClassVar[str] = "Webhook"
    address_label: ClassVar[str] = "Webhook URL"
    noun: ClassVar[str] = "webhook"
    profile_editable: ClassVar[bool] = True
    address_field: ClassVar[str | None] = "webhook_url"
    switch_field: ClassVar[str] = "webhook_enabled"
    supports_html: ClassVar[bool] = True
    subject_mode: ClassVar[str] = "optional"
    html_part: ClassVar[bool] = True

    def __init__(self, *, secret: str, connect_timeout_s: float = 5, read_timeout_s: float = 10,
                 allow_private: bool = False, resolve: Any = None) -> None:
        self._secret = secret
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.allow_private = allow_private
        self._resolve = resolve or _resolve
        self._local = threading.local()  # .conns: {(scheme, host, port, ip): connection}
        self._open: list[http.client.HTTPConnection] = []
        self._open_lock = threading.Lock()
        #: connections opened so far (tests check that they are kept)
        self.connects = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookChannel:
        return cls(secret=settings.webhook_signing_secret, connect_timeout_s=settings.webhook_connect_timeout_s,
                   read_timeout_s=settings.webhook_read_timeout_s, allow_private=settings.webhook_allow_private)

    @classmethod
    def limit_rules(cls, settings: Settings) -> ChannelRules:
        # Per receiving host: the key is the URL's host (limit_key), nothing global.
        return ChannelRules(overall=(), per_key=lambda key: (Rule.per_second("host", settings.webhook_rate_per_s),))

    @classmethod
    def connections(cls, settings: Settings) -> int:
        return settings.webhook_connections

    def __repr__(self) -> str:
        return f"WebhookChannel(configured={bool(self._secret)}, allow_private={self.allow_private})"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "configured": bool(self._secret), "allow_private": self.allow_private,
                "connect_timeout_s": self.connect_timeout_s, "read_timeout_s": self.read_timeout_s,
                "connections_opened": self.connects}

    # ------------------------------------------------------------------ the address

    def check_address(self, value: str) -> str:
        """An http(s) URL with a host and no credentials, whose every address is public unless
        private targets are allowed; raises ValueError saying what is wrong."""
        url = check_url(value)
        self._public_addresses(urllib.parse.urlsplit(url))
        return url

    def limit_key(self, address: str) -> str | None:
        return (urllib.parse.urlsplit(address).hostname or "").lower() or None

    def _public_addresses(self, parts: urllib.parse.SplitResult) -> list[str]:
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            found = self._resolve(host, port)
        except OSError as exc:
            raise ValueError(f"the host {host!r} does not resolve ({type(exc).__name__})") from None
        if not found:
            raise ValueError(f"the host {host!r} does not resolve")
        if not self.allow_private:
            for ip in found:
                why = _not_public(ip)
                if why:
                    raise ValueError(f"the host {host!r} is {why} ({ip}); private targets are refused "
                                     "unless VESTNIK_WEBHOOK_ALLOW_PRIVATE=1")
        return found

    # ------------------------------------------------------------------ sending

    def send(self, address: str, message: RenderedMessage) -> str:
        if not self._secret:
            raise DeliveryError.permanent("webhook is not configured (VESTNIK_WEBHOOK_SIGNING_SECRET is empty)")
        try:
            url = check_url(address)
            parts = urllib.parse.urlsplit(url)
            ips = self._public_addresses(parts)
        except ValueError as exc:
            # The address was fine when saved; now it is not (DNS changed): the address is what is wrong.
            raise DeliveryError.permanent(f"webhook URL refused: {exc}", address_unreachable=True) from None
        body = json.dumps(payload(message), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Vestnik-Webhook/1",
                   **sign(self._secret, body)}
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = self._connection(parts, ips[0])
        if conn.sock is None:
            try:
                conn.connect()
                self.connects += 1
            except TimeoutError:
                conn.close()
                raise DeliveryError.transient(f"no connection to {parts.hostname} within "
                                              f"{self.connect_timeout_s}s") from None
            except (OSError, ssl.SSLError) as exc:
                conn.close()
                raise DeliveryError.transient(f"connection to {parts.hostname} failed "
                                              f"({type(exc).__name__})") from None
        conn.sock.settimeout(self.read_timeout_s)
        try:
            conn.request("POST", path, body=body, headers=headers)
        except OSError as exc:
            conn.close()  # the request did not get out whole: the receiver cannot have acted on it
            raise DeliveryError.transient(f"connection to {parts.hostname} lost while sending "
                                          f"({type(exc).__name__})") from None
        try:
            response = conn.getresponse()
            status, raw = response.status, response.read()
            retry_after = response.getheader("Retry-After")
            if response.will_close:
                conn.close()
        except TimeoutError:
            conn.close()
            raise DeliveryError.uncertain(f"{parts.hostname}: no answer within {self.read_timeout_s}s after "
                                          "sending; the receiver may have acted on it") from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise DeliveryError.uncertain(f"{parts.hostname}: connection lost after sending "
                                          f"({type(exc).__name__}); the receiver may have acted on it") from None
        return classify(status, raw, retry_after, message.notification_id)

    def _connection(self, parts: urllib.parse.SplitResult, ip: str) -> http.client.HTTPConnection:
        """This thread's kept connection to the checked address, or a new one."""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = (parts.scheme, parts.hostname or "", port, ip)
        conns: dict[tuple[str, str, int, str], http.client.HTTPConnection] = self._local.__dict__.setdefault(
            "conns", {})
        conn = conns.get(key)
        if conn is not None and conn.sock is not None and not _closed_by_peer(conn.sock):
            return conn
        if conn is not None:
            conn.close()
        if parts.scheme == "https":
            conn = _PinnedHTTPS(parts.hostname or "", port, ip=ip, timeout=self.connect_timeout_s,
                                context=ssl.create_default_context())
        else:
            conn = _PinnedHTTP(parts.hostname or "", port, ip=ip, timeout=self.connect_timeout_s)
        conns[key] = conn
        with self._open_lock:
            self._open.append(conn)
        return conn

    def close(self) -> None:
        with self._open_lock:
            conns, self._open = self._open, []
        for conn in conns:
            conn.close()


def payload(message: RenderedMessage) -> dict[str, Any]:
    """What the receiver gets: the message as the template rendered it, and whom it is about."""
    out = {"event_type": message.event_type or None, "notification_id": message.notification_id,
           "client_id": message.client_id, "locale": message.locale or None, "subject": message.subject,
           "text": message.text, "html": message.html}
    unsubscribe = message.headers.get("List-Unsubscribe", "").strip("<> ")
    if unsubscribe:  # a marketing message: the receiving system offers the way out
        out["unsubscribe_url"] = unsubscribe
    return out


def classify(status: int, raw: bytes, retry_after: str | None, notification_id: int) -> str:
    """The receiver's answer as an outcome: the message id on 2xx, else a DeliveryError."""
    if 200 <= status < 300:
        return f"webhook:{notification_id}:{status}"
    answer = raw[:_ANSWER_CHARS].decode("utf-8", "replace").strip()
    said = f"HTTP {status}" + (f": {answer}" if answer else "")
    if status == 429:
        return _raise(DeliveryError.rate_limited(f"the receiver asks to slow down ({said})",
                                                 _retry_after_s(retry_after)))
    if status == 408 or status >= 500:
        return _raise(DeliveryError.transient(f"the receiver failed ({said})"))
    if status == 410:
        return _raise(DeliveryError.permanent(f"the receiver says the URL is gone ({said})",
                                              address_unreachable=True))
    return _raise(DeliveryError.permanent(f"the receiver refused the message ({said})"))


def _raise(error: DeliveryError) -> str:
    raise error


def _retry_after_s(value: str | None) -> float:
    """Retry-After in seconds (an HTTP date is rare from receivers: a minute then)."""
    try:
        return min(max(float(value or "1"), 0.1), 3600.0)
    except ValueError:
        return 60.0


def check_url(value: str) -> str:
    """The URL's own shape (no network): http or https, a host, no credentials, no fragment."""
    url = (value or "").strip()
    if not url:
        raise ValueError("is empty")
    if len(url) > MAX_URL:
        raise ValueError(f"longer than {MAX_URL} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"not a URL: {url[:80]!r}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"must be an http:// or https:// URL, got {url[:80]!r}")
    if not parts.hostname:
        raise ValueError(f"has no host: {url[:80]!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user name or password (the request is signed instead)")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    return url


def _resolve(host: str, port: int) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]  # a literal address needs no lookup
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _not_public(ip: str) -> str | None:
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for what, test in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                       ("private", address.is_private), ("multicast", address.is_multicast),
                       ("reserved", address.is_reserved), ("unspecified", address.is_unspecified)):
        if test:
            return f"a {what} address"
    if not address.is_global:
        return "not a public address"
    return None


def _closed_by_peer(sock: socket.socket) -> bool:
    """A kept connection the server has closed (or that has unread bytes) is not reused."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address that was checked; the Host header stays the URL's host."""

    def __init__(self, host: str, port: int, *, ip: str, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to the checked address, with the URL's host as the server name (SNI and certificate)."""

    def __init__(self, host: str, port: int, *, ip: str, context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(host, port, context=context, **kwargs)
        self._ip = ip
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


__all__ = ["Addressable", "WebhookChannel", "check_url", "classify", "payload"]
