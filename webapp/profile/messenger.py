"""Sign-in messages: sent at once through the real channel classes, recorded in the history.

Why not an outbox event and the queue like every other notification:

- a sign-in link must arrive while the client waits on the page, not behind a
  broadcast queued for hours by the email quota (480 a day on Yandex);
- the link is a bearer secret: in ``payload_json`` and the rendered ``body``
  (the admin's history, readable by the support role) it would let anyone
  with read access sign in as the client.  Here it exists only in the message
  itself; the history row keeps the text with the secret masked;
- the send runs on a small background pool, so the sign-in page answers at
  once and as fast for an unknown address as for a known one (no account
  enumeration by timing).  The secret's row is written there too, just
  before the send: the request itself runs the same statements whoever the
  address belongs to (``tests/integration/test_sign_in_enumeration.py``).

What stays the same as the pipeline: it *is* the pipeline's delivery path,
``Delivery.send_now`` (``workers/delivery.py``): the channel classes and their
error classification, the shared rate limiter (no provider limit is exceeded
by sign-ins), a ``notifications`` row (category ``service``), a
``delivery_attempts`` row written before the call and closed after it, and the
recording and "address unreachable" marking of ``workers/notifications.py``.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from vestnik.shared import locales
from vestnik.shared.config import Settings
from vestnik.shared.models import Category, Client
from vestnik.workers.channels import build_channels
from vestnik.workers.channels.base import Channel, RenderedMessage
from vestnik.workers.delivery import Delivery
from vestnik.workers.limits import Limiter, build_limiter
from vestnik.workers.notifications import seed_source

log = logging.getLogger("vestnik.profile")

EVENT_TYPE = "client_sign_in"
MASK = "••••••"
#: how long a sign-in message may wait for a limiter slot before it is given up
MAX_LIMITER_WAIT_S = 20.0


@dataclass(frozen=True)
class SignInText:
    subject: str | None
    text: str  # Telegram HTML or the plain-text part of an email
    html: str | None
    masked: str  # what the history keeps


#: Sign-in messages in every locale (shared/locales.py); {name}, {minutes}, {code} are filled in.
_LINK_EMAIL = {
    "ru": ("Вход в личный кабинет", "Здравствуйте, {name}!", "Здравствуйте!",
           "Чтобы войти в личный кабинет, откройте ссылку:",
           "Ссылка действует {minutes} мин. и срабатывает один раз.",
           "Если вы не запрашивали вход, просто удалите это письмо."),
    "uz-latn": ("Shaxsiy kabinetga kirish", "Assalomu alaykum, {name}!", "Assalomu alaykum!",
                "Shaxsiy kabinetga kirish uchun havolani oching:",
                "Havola {minutes} daqiqa amal qiladi va faqat bir marta ishlaydi.",
                "Agar siz kirishni soʻramagan boʻlsangiz, bu xatni oʻchirib tashlang."),
    "en": ("Sign in to your profile", "Hello, {name}!", "Hello!", "To sign in to your profile, open this link:",
           "The link works for {minutes} min. and only once.",
           "If you did not ask to sign in, just delete this email."),
}
_CODE_TELEGRAM = {
    "ru": "Код для входа в личный кабинет: <b>{code}</b>\nДействует {minutes} мин. Никому его не сообщайте.",
    "uz-latn": "Shaxsiy kabinetga kirish kodi: <b>{code}</b>\n{minutes} daqiqa amal qiladi. "
               "Uni hech kimga aytmang.",
    "en": "Your sign-in code: <b>{code}</b>\nIt works for {minutes} min. Do not share it with anyone.",
}


def link_email(link: str, minutes: int, lang: str, name: str) -> SignInText:
    masked_link = link.rsplit("/", 1)[0] + "/" + MASK
    subject, hello_name, hello, intro, works, ignore = locales.pick(_LINK_EMAIL, lang)
    lines = [hello_name.format(name=name) if name else hello, intro, "{link}", works.format(minutes=minutes), ignore]
    text = "\n\n".join(lines)
    body_html = "".join(
        f'<p><a href="{html.escape(link)}">{html.escape(link)}</a></p>' if line == "{link}"
        else f"<p>{html.escape(line)}</p>" for line in lines)
    return SignInText(subject, text.replace("{link}", link), body_html, text.replace("{link}", masked_link))


def code_telegram(code: str, minutes: int, lang: str) -> SignInText:
    template = locales.pick(_CODE_TELEGRAM, lang)
    return SignInText(None, template.format(code=code, minutes=minutes), None,
                      template.format(code=MASK, minutes=minutes))


class SignInMessenger:
    """Sends sign-in messages on a background pool; ``send`` returns a Future (tests wait on it)."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session], *,
                 channels: dict[str, Channel] | None = None, limiter: Limiter | None = None) -> None:
        self.settings = settings
        self.factory = factory
        self.channels = channels if channels is not None else build_channels(settings)
        self.limiter = limiter if limiter is not None else build_limiter(settings, seed=seed_source(factory))
        self.delivery = Delivery(factory, self.channels, settings, limiter=self.limiter)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vestnik-sign-in")

    def send(self, client_id: int, channel_name: str, message: SignInText,
             store: Callable[[Session], None] | None = None) -> Future:
        """Send ``message`` in the background; ``store(session)`` first keeps the secret it carries (committed)."""
        return self._pool.submit(self._send, client_id, channel_name, message, store)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for channel in self.channels.values():
            channel.close()

    def _send(self, client_id: int, channel_name: str, message: SignInText,
              store: Callable[[Session], None] | None) -> str:
        try:
            if store is not None:
                with self.factory() as session:
                    store(session)
                    session.commit()
            return self._deliver(client_id, channel_name, message)
        except Exception:
            log.exception("sign-in message failed", extra={"action": "profile.sign_in_error",
                                                           "client_id": client_id, "channel": channel_name})
            raise

    def _deliver(self, client_id: int, channel_name: str, message: SignInText) -> str:
        channel = self.channels[channel_name]
        with self.factory() as session:
            client = session.get(Client, client_id)
            address = channel.address_of(client) if client is not None else None
            locale = client.locale if client is not None else "ru"
        if client is None or address is None:
            return "no_address"
        # The history keeps the masked text; the secret exists only in the message itself.
        row = {"recipient_id": client_id, "channel": channel_name, "recipient_address": address,
               "event_type": EVENT_TYPE, "template_code": EVENT_TYPE, "payload_json": {},
               "category": Category.service.value, "locale": locale or "ru", "step": "sign_in",
               "initiator": f"client:{client.crm_id}", "subject": message.subject, "body": message.masked}
        result = self.delivery.send_now(row, RenderedMessage(notification_id=0, text=message.text,
                                                             subject=message.subject, html=message.html),
                                        max_wait_s=MAX_LIMITER_WAIT_S)
        log.info("sign-in message", extra={"action": f"profile.sign_in_{result.status}",
                                           "notification_id": result.notification_id, "channel": channel_name})
        return "sent" if result.status == "sent" else "failed"
